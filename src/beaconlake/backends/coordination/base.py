"""The coordination seam: what the nodes of one deployment agree on through a shared service.

Four things, each needed once per deployment rather than once per machine:

- **leases** with fencing tokens: the jobs role (scheduler, convert, analyze, sequence
  detection, retention, erasure) runs on exactly one node at a time. A lease is held for
  ``ttl`` seconds and renewed; a node that stops renewing (killed, paused, cut off) loses it,
  and the next holder's token is larger. Before anything irreversible (an Iceberg commit, a
  checkpoint write) the holder calls ``Lease.check()``, which fails once the lease has passed
  on, so a paused former leader that wakes up cannot commit over its successor.
- **a key/value store** for checkpoints (the sequence detector's position, closed windows),
  whose fenced writes are refused once the writer's lease is gone;
- **heartbeats**: every node says who it is, its role and its figures (ingest rate, spool,
  delivery lag), so any node's dashboard shows every node;
- **the run log**: schedule history and run requests ("Run now" from any node reaches the
  active jobs node).

Backends: ``local`` (the default: flock and SQLite under ``<data_dir>/run/``; one machine) and
``postgres`` (leases and tables in PostgreSQL; many machines).
"""

from __future__ import annotations

import json
import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from beaconlake.errors import BackendUnavailable

log = logging.getLogger(__name__)

# The lease of the jobs role: whoever holds it is the active jobs node, the one whose scheduler
# (and sequence detector) runs; the other jobs-capable nodes wait to take it over.
JOBS_LEASE = "jobs"
# The lease of one run (convert, retention, erasures, analyze: the scheduler's, or `beaconlake
# convert`/`forget` from a command line on any node), held for the run's length: runs never
# overlap anywhere, and every commit of a run checks it (fencing). A run started under a token
# that is no longer the live one is marked interrupted (RunLog.interrupt_stale).
RUN_LEASE = "jobs-run"


class LeaseLost(Exception):
    """The lease passed to another holder (or expired): whatever it guarded must not be committed."""


@dataclass(frozen=True)
class Capabilities:
    # Shared by every node that points at the same service: True for postgres. False (local):
    # valid on one machine only, and a deployment of several nodes must not use it.
    shared: bool


class Lease(ABC):
    """One held lease. ``token`` grows every time the lease is taken (fencing)."""

    name: str
    holder: str
    token: int

    @abstractmethod
    def renew(self) -> bool:
        """Extend the lease by its ttl; False (and the lease is lost for good) when it has
        already passed to another holder or expired."""

    @abstractmethod
    def check(self) -> None:
        """Raise ``LeaseLost`` unless this lease is still ours and unexpired: call right before a
        commit. Leaves enough margin before expiry that the commit lands inside the lease."""

    @abstractmethod
    def release(self) -> None:
        """Give the lease up now (idempotent)."""


# The fields a run's record has, and those a run may change after it started.
RUN_FIELDS = ("run_id", "node", "token", "trigger", "started_at", "finished_at", "status", "stage", "events",
              "new_files", "quarantined", "analyze", "error", "tenants", "erasures", "erasures_waiting")
RUN_UPDATABLE = frozenset(RUN_FIELDS) - {"run_id", "node", "token", "trigger", "started_at"}


def run_update(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` of a run update, checked, with the analyze summary as JSON text (both backends
    store it as text: a summary that is not JSON, an old run's, stays readable)."""
    unknown = set(fields) - RUN_UPDATABLE
    if unknown:
        raise ValueError(f"run log: no field {sorted(unknown)[0]!r}; fields: {', '.join(sorted(RUN_UPDATABLE))}")
    if "analyze" in fields and not isinstance(fields["analyze"], (str, type(None))):
        fields = {**fields, "analyze": json.dumps(fields["analyze"], default=str)}
    return fields


def run_record(d: dict[str, Any]) -> dict[str, Any]:
    """A stored run as both backends give it: analyze decoded when it is JSON, its length in seconds."""
    if d["analyze"]:
        try:
            d["analyze"] = json.loads(d["analyze"])
        except ValueError:
            pass
    d["seconds"] = round((d["finished_at"] - d["started_at"]) / 1000, 3) if d["finished_at"] else None
    return d


class RunLog(ABC):
    """The scheduler's record of runs and the run requests (see ``schedule/state.py`` for the
    fields of a run: run_id, trigger, started_at, finished_at, status, stage, events, new_files,
    quarantined, analyze, error, tenants, erasures, erasures_waiting, node)."""

    @abstractmethod
    def start(self, run_id: str, trigger: str, tenants: list[str] | None = None, *, lease: Lease | None = None) -> None:
        """Record a run as started, by this node (and under ``lease``, the run lease it holds)."""

    @abstractmethod
    def update(self, run_id: str, **fields: Any) -> None: ...

    @abstractmethod
    def finish(self, run_id: str, status: str, **fields: Any) -> None:
        """Record a run's end; a run already marked interrupted (its node lost the lease) stays so."""

    @abstractmethod
    def interrupt_stale(self) -> int:
        """Mark 'running' runs that were not started under the live run lease (``RUN_LEASE``) as
        interrupted: their node lost the lease (killed, paused, cut off) and they will never finish."""

    @abstractmethod
    def set(self, key: str, value: Any) -> None: ...

    @abstractmethod
    def state(self) -> dict[str, Any]: ...

    @abstractmethod
    def request(self, who: str = "requested", tenant: str | None = None) -> None:
        """Ask the active jobs node for a run now: of ``tenant`` only, or of every tenant (None)."""

    @abstractmethod
    def requested(self, tenant: str | None = None) -> bool: ...

    @abstractmethod
    def take_request(self) -> tuple[str, list[str] | None] | None:
        """The pending requests as one run (and forget them): (trigger, tenants or None)."""

    @abstractmethod
    def runs(self, limit: int = 20) -> list[dict[str, Any]]: ...

    @abstractmethod
    def get(self, run_id: str) -> dict[str, Any]: ...


class Coordination(ABC):
    """One process's handle on the coordination service."""

    capabilities: ClassVar[Capabilities]
    node: str  # this node's id (``node.id``)

    @abstractmethod
    def acquire(self, name: str, ttl_secs: float) -> Lease | None:
        """Take lease ``name`` now if nobody holds it (or its holder's has expired); None if it
        is held. Never blocks longer than one round trip."""

    @abstractmethod
    def holder(self, name: str) -> dict[str, Any] | None:
        """Who holds lease ``name``: {"holder", "token", "expires_ms"}, or None."""

    @abstractmethod
    def get(self, key: str) -> Any | None:
        """The JSON value stored under ``key``, or None."""

    @abstractmethod
    def put(self, key: str, value: Any, lease: Lease | None = None) -> None:
        """Store a JSON value. With ``lease``, the write is fenced: it raises ``LeaseLost``
        instead of writing once the lease has passed on."""

    @abstractmethod
    def heartbeat(self, role: str, info: dict[str, Any]) -> None:
        """Record that this node is alive, its role and its figures (JSON)."""

    @abstractmethod
    def nodes(self) -> list[dict[str, Any]]:
        """Every node heard from: {"node", "role", "seen_ms", "age_ms", "info"}, newest first.
        ``age_ms``: since its last heartbeat, by the service's clock (not the reader's)."""

    @abstractmethod
    def run_log(self, keep_runs: int = 200) -> RunLog:
        """The run log; ``keep_runs``: how many finished runs it keeps."""

    def hold(self, name: str, ttl_secs: float) -> Lease | None:
        """``acquire``, plus a thread that renews the lease every third of ``ttl_secs`` until it is
        released or lost (``KeptLease``); None when another holder has it."""
        lease = self.acquire(name, ttl_secs)
        return None if lease is None else KeptLease(lease, ttl_secs / 3)

    def close(self) -> None:
        """Release connections (leases are released by their holders)."""

# -- a held lease, renewed in the background ----------------------------------------------------
# The renewing thread ticks every third of the ttl. A renewal the service refuses (the lease
# passed on, or expired) loses the lease for good: check() raises from then on, and the run stops
# before its next commit. A renewal that cannot reach the service is tried again on the next tick;
# meanwhile the backend's check() (a local deadline and a margin) fails once the lease may have
# run out, so an unreachable service never lets a commit through.


class KeptLease(Lease):
    def __init__(self, lease: Lease, every_secs: float) -> None:
        self.lease, self.every_secs = lease, every_secs
        self.name, self.holder, self.token = lease.name, lease.holder, lease.token
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{lease.name}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.every_secs):
            try:
                if self.lease.renew():
                    continue
            except BackendUnavailable as exc:
                log.warning("lease %r (token %d): renewal failed, trying again in %.1f s: %s", self.name, self.token,
                            self.every_secs, exc)
                continue
            self.lost = f"lease {self.name!r} (token {self.token}) could not be renewed: it passed on or expired"
            log.error("%s; what runs under it stops before its next commit", self.lost)
            return

    def renew(self) -> bool:
        return self.lost is None and self.lease.renew()

    def check(self) -> None:
        if self.lost is not None:
            raise LeaseLost(self.lost)
        self.lease.check()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(5)
        self.lease.release()
