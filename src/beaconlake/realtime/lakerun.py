"""The lake detector's loop (``realtime.sequences_from = "lake"``): one process of each jobs node
runs it; the lease ``LEASE_NAME`` in the coordination store makes exactly one of them detect at a
time. The node that holds it steps the detector (``lakefeed.LakeDetector``) every
``realtime.lake_poll_interval_secs`` and renews the lease before each step; a node that stops
renewing (killed, paused, cut off) loses it after ``coordination.lease_secs`` and another jobs node
takes over from the checkpoint. A former holder's writes are refused (fencing), so it can neither
move the checkpoint nor publish matches past its lease.

Why a lease of its own rather than the scheduler's: detection runs every few seconds while a
convert run can last minutes; two leases let each hand over on its own failure, and both land on
the same node in practice (the first jobs node up takes both).
"""

from __future__ import annotations

import logging
import signal
import threading

from beaconlake.backends.coordination import LeaseLost
from beaconlake.config import Settings
from beaconlake.realtime.lakefeed import LEASE_NAME, LakeDetector
from beaconlake.telemetry import Metrics

log = logging.getLogger(__name__)



def run(settings: Settings, stop: threading.Event, metrics: Metrics | None = None) -> None:
    """Detect until ``stop`` is set: take the lease ``LEASE_NAME`` when it is free (one node's
    detector runs at a time, whichever jobs node holds it), step every
    ``realtime.lake_poll_interval_secs`` while renewing it, and give it up on the way out. A failed
    step is logged and counted, and the detector starts again from its checkpoint."""
    from beaconlake.backends.coordination import open_coordination
    from beaconlake.backends.counters import open_counters
    from beaconlake.backends.highlevel import open_highlevel
    from beaconlake.backends.storage import open_storage

    rt = settings.realtime
    poll = rt.lake_poll_interval_secs
    metrics = metrics or Metrics(settings.run_path, role="sequences")
    coordination = open_coordination(settings.coordination, run_dir=settings.run_path, node=settings.node.name)
    storage = open_storage(settings.storage)
    index = open_highlevel(settings.highlevel)
    counters = open_counters(settings.counters, role="sequences", state_dir=settings.realtime_path,
                             retention_ms=rt.retention_hours * 3_600_000)
    ttl = settings.coordination.lease_secs
    try:
        while not stop.is_set():
            lease = coordination.acquire(LEASE_NAME, ttl)
            if lease is None:
                stop.wait(poll)  # another node detects; take over when it stops renewing
                continue
            log.info("sequences: %s holds the lake detector's lease (token %d)", settings.node.name, lease.token)
            try:
                feed = None
                while not stop.is_set() and lease.renew():
                    try:
                        if feed is None:  # reads the checkpoint: the coordination store may be down too
                            feed = LakeDetector(settings, storage, coordination, lease, index, counters, metrics)
                        feed.step()
                    except LeaseLost:
                        raise
                    except Exception:  # one failed pass (storage down, a bug) must not stop detection
                        metrics.inc("beaconlake_sequences_lake_failures_total")
                        log.exception("sequences: a lake detector step failed; starting again from the checkpoint")
                        feed = None
                    _publish_metrics(metrics)
                    stop.wait(poll)
            except LeaseLost as exc:
                log.warning("sequences: lost the lake detector's lease (%s); another node goes on", exc)
            finally:
                lease.release()
    finally:
        counters.close()
        index.close()
        coordination.close()


def _publish_metrics(metrics: Metrics) -> None:
    try:
        metrics.write_snapshot()
    except OSError as exc:
        log.warning("sequences: cannot publish metrics: %s", exc)


def run_process(settings: Settings, log_level: str = "INFO") -> None:
    """The detector's process (``beaconlake up`` on a jobs node, ``realtime.sequences_from = "lake"``):
    ``run`` until SIGTERM."""
    from beaconlake.logs import setup
    from beaconlake.procname import set_process_name

    setup(log_level)
    set_process_name("bl-sequences")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    run(settings, stop)
