"""Every node's heartbeat: who it is, its role and its figures, in the coordination store every
``coordination.heartbeat_secs``, so any node's Pipeline view shows every node of the deployment
(with the age of its last heartbeat by the store's clock: a node that stops beating is visibly
stale, whatever the clocks of the nodes say).

Sent from the ``up`` process itself (a thread), not from a worker: it reads what every process
of the node wrote (the metrics snapshots, the spool folder), and it lives as long as the node.
A store that cannot be reached costs a warning and the next beat tries again: the heartbeat is
never on the path of an acknowledgement.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from beaconlake import __version__
from beaconlake.backends.coordination import JOBS_LEASE, Coordination, open_coordination
from beaconlake.config import Settings
from beaconlake.ingest import spooldir
from beaconlake.telemetry import Metrics

log = logging.getLogger(__name__)

ACCEPTED = "beaconlake_events_accepted_total"


class Heartbeat:
    def __init__(self, settings: Settings, coordination: Coordination | None = None) -> None:
        self.settings = settings
        self.coord = coordination or open_coordination(settings.coordination, run_dir=settings.run_path,
                                                       node=settings.node.name)
        self.metrics = Metrics(settings.run_path, role="heartbeat")
        self._last: tuple[float, float] | None = None  # (monotonic, accepted total) of the previous beat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def figures(self) -> dict[str, Any]:
        """This node's figures now; the ingest rate is over the time since the previous call."""
        snap = self.metrics.gather()
        accepted = sum(snap.counters.get(ACCEPTED, {}).values())
        now = time.monotonic()
        rate = None
        if self._last is not None and now > self._last[0]:
            rate = round(max(0.0, accepted - self._last[1]) / (now - self._last[0]), 2)
        self._last = (now, accepted)
        spool = self.settings.spool_path
        holder = self.coord.holder(JOBS_LEASE)
        return {
            "pid": os.getpid(), "version": __version__,
            "events_accepted": int(accepted), "ingest_events_per_sec": rate,
            "spool_undelivered_bytes": spooldir.undelivered_bytes(spool),
            "spool_segments": len(spooldir.sealed_segments(spool)) + len(spooldir.open_segments(spool)),
            "delivery_lag_seconds": max(snap.gauges.get("beaconlake_delivery_lag_seconds", {}).values(), default=0.0),
            "jobs_capable": self.settings.node.runs_jobs,
            "jobs_active": holder is not None and holder["holder"] == self.coord.node,
        }

    def beat(self) -> None:
        try:
            self.coord.heartbeat(self.settings.node.role, self.figures())
        except Exception as exc:  # any store failure (down, full, locked): the next beat tries again
            if not self._failing:
                log.warning("heartbeat of node %s not recorded (retried every %g s): %s", self.coord.node,
                            self.settings.coordination.heartbeat_secs, exc)
            self._failing = True
            return
        if self._failing:
            log.info("heartbeat of node %s recorded again", self.coord.node)
        self._failing = False

    def start(self) -> None:
        def loop() -> None:
            while True:
                self.beat()
                if self._stop.wait(self.settings.coordination.heartbeat_secs):
                    return

        self._thread = threading.Thread(target=loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.coord.close()
