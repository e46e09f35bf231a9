"""The counters seam: where mid-level window aggregates live (memory partials, or Redis).

Writers hand ``add`` a batch already folded into minute windows, whose sketches are the
exact sets of anonymous ids seen (``IdSet``); each backend turns those into its own
mergeable distinct-count sketch. Readers ask ``query`` for one tenant and event name and get
buckets of a grain (minute, hour, day) merged across every process that wrote.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from beaconlake.backends.counters.windows import Agg, WindowKey, describe


@dataclass(frozen=True)
class Capabilities:
    """How a counters backend behaves, asked by its callers instead of its class."""

    # add() keeps the windows in this process until flush() publishes them: readers in other
    # processes see a write up to flush_interval_secs later (so windows are closed that much later).
    # False: a write is shared with every process when add() returns.
    per_process_partials: bool
    # Calls are work on this process's memory, cheap enough for the event loop, and the live
    # windows they touch are changed there: call them on the event loop, never from a thread.
    # False: calls do network I/O; run them in a thread.
    in_process: bool
    # How often a writer calls flush() and prune().
    flush_interval_secs: float


class IdSet(set):
    """The anonymous ids of a batch's window: a sketch that is exact and merges by union."""

    def merge(self, other: IdSet) -> IdSet:
        self.update(other)
        return self


def row(start: int, group: str, agg: Agg, distinct: int) -> dict[str, Any]:
    return {
        "start": start,
        "path": group or None,
        "count": agg.count,
        "distinct_anonymous_ids": distinct,
        "props": describe(agg.nums),
    }


class Counters(ABC):
    """One process's handle on the counters. ``add`` may keep partials in the process; ``flush``
    makes them visible to readers in other processes (and durable); ``query`` sees them all."""

    #: The relative standard error of ``distinct_anonymous_ids``.
    standard_error: float
    capabilities: ClassVar[Capabilities]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Any, *, role: str, state_dir: Path, retention_ms: int) -> Counters:
        """This process's handle on the counters its ``[counters]`` section describes. ``role``
        names the process (collector, deliver); ``state_dir`` is this machine's folder for
        realtime state; windows are kept ``retention_ms``."""

    @classmethod
    def prepare(cls, settings: Any, *, state_dir: Path, before_ms: int) -> int:
        """Start-up work of ``beaconlake up``, before any process opens the counters (so none is
        writing): returns how many windows of an earlier run it recovered. ``before_ms``: windows
        that start before it are past retention. Nothing to do for most backends."""
        return 0

    @abstractmethod
    def add(self, batch: dict[WindowKey, Agg]) -> None: ...

    def fold(self, folder: Any, tenant: str, events: Any, now_ms: int) -> int:
        """Fold events (see ``realtime.stats.Folder.fold``) and add them; return how many were late."""
        batch: dict = {}
        late = folder.fold(tenant, events, now_ms, batch, IdSet)
        self.add(batch)
        return late

    @abstractmethod
    def query(self, tenant: str, name: str, start_ms: int, end_ms: int, by: str, grouped: bool) -> list[dict[str, Any]]:
        """Buckets of grain ``by`` made of the minutes in [start_ms floored to the grain, end_ms),
        sorted by start then path. ``grouped``: one row per page path, else the name's totals."""

    @abstractmethod
    def series(self, start_ms: int, end_ms: int) -> set[tuple[str, str]]:
        """The (tenant, event name) pairs with a window in [start_ms, end_ms)."""

    @abstractmethod
    def prune(self, before_ms: int) -> None:
        """Forget windows that start before ``before_ms`` (past retention)."""

    def flush(self) -> None:
        """Publish this process's partials; a no-op where writes are shared at once."""

    def close(self) -> None:
        self.flush()
