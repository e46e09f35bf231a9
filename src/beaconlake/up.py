"""The composition root of a running pipeline: which processes ``beaconlake up`` runs, what each
is built from, and how they start, restart and stop.

The processes:

- **HTTP server** (``serve/http/supervisor``): one socket, ``server.workers`` processes, each
  serving ``serve.app.create_app``; a dead worker is restarted by the supervisor.
- **Lake deliverer** (``ingest.deliver``), with the realtime consumer injected when
  ``realtime.enabled``; restarted within a second when it dies, so acknowledged events keep
  flowing to the lake.
- **Scheduler** (``schedule.run``): convert + analyze in a process of its own, never in a
  server worker's request path.

Start-up order: build one app (a bad tenant schema stops us here, before anything serves), take
the spool's lock (held until this process exits), recover the segments of an earlier run, clear
its metrics snapshots, fold its memory-counter partials; then the deliverer, the scheduler and
the server. Stop order: the server first (its workers seal their segments), the scheduler
(SIGTERM: it stops after the run in progress, killed after ``SCHEDULER_STOP_SECS``), the
deliverer last (SIGTERM: it drains what the workers sealed).

Why a module of its own above ``serve/``: it wires stages that have nothing to do with HTTP
(delivery, realtime's consumer, the scheduler), and ``beaconlake deliver`` builds the same
deliverer without any server; ``serve/`` stays what one HTTP worker runs.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import shutil
import threading
import time
from multiprocessing.process import BaseProcess

from beaconlake.backends.storage import Storage, open_storage
from beaconlake.config import Settings
from beaconlake.ingest import deliver, spool
from beaconlake.ingest.deliver import Deliverer, PreDelivery
from beaconlake.telemetry import Metrics

log = logging.getLogger(__name__)

APP_FACTORY = "beaconlake.serve.app:create_app"  # what each server worker imports and calls
# A convert run is crash-safe (its batches are redone), so shutdown need not wait for a long one.
SCHEDULER_STOP_SECS = 20
WATCH_SECS = 1.0  # how often the deliverer's liveness is checked


def pre_delivery(settings: Settings, storage: Storage, metrics: Metrics) -> list[PreDelivery]:
    """What must see each sealed segment before lake delivery deletes it."""
    if not settings.realtime.enabled:
        return []
    from beaconlake.realtime.consumer import RealtimeConsumer

    return [RealtimeConsumer(settings, storage, metrics)]


def build_deliverer(settings: Settings) -> Deliverer:
    """The deliverer with its consumers, sharing its storage and metrics."""
    storage = open_storage(settings.storage)
    metrics = Metrics(settings.run_path, role="deliver")
    return Deliverer(settings, storage, metrics, pre_delivery(settings, storage, metrics))


def run_deliverer(settings: Settings, log_level: str = "INFO") -> None:
    """The deliverer process's target (picklable: ``spawn`` starts it in a fresh interpreter)."""
    deliver.run_forever(functools.partial(build_deliverer, settings), log_level)


class DelivererProcess:
    """The deliverer process, restarted when it dies while we run."""

    def __init__(self, settings: Settings, log_level: str) -> None:
        self.settings = settings
        self.log_level = log_level
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()  # no restart may slip in between stop() and its terminate()
        self._stopped = threading.Event()
        self.proc = self._spawn()

    def _spawn(self) -> BaseProcess:
        proc = self._ctx.Process(target=run_deliverer, args=(self.settings, self.log_level), name="beaconlake-deliver")
        proc.start()
        return proc

    def watch(self) -> None:
        threading.Thread(target=self._watch, name="beaconlake-deliver-watch", daemon=True).start()

    def _watch(self) -> None:
        while not self._stopped.wait(WATCH_SECS):
            with self._lock:
                if not self.proc.is_alive() and not self._stopped.is_set():
                    log.error("lake delivery process exited with code %s; restarting it", self.proc.exitcode)
                    self.proc = self._spawn()

    def stop(self) -> None:
        """SIGTERM: the deliverer drains what the workers sealed on shutdown, then exits."""
        with self._lock:
            self._stopped.set()
            proc = self.proc
        if proc.is_alive():
            proc.terminate()
            proc.join(self.settings.delivery.drain_timeout_secs + 5)


def start_scheduler(settings: Settings, log_level: str) -> BaseProcess:
    from beaconlake.schedule.run import run_forever as run_scheduler

    proc = multiprocessing.get_context("spawn").Process(target=run_scheduler, args=(settings, log_level),
                                                        name="beaconlake-schedule")
    proc.start()
    return proc


def stop_scheduler(proc: BaseProcess) -> None:
    if not proc.is_alive():
        return
    proc.terminate()  # SIGTERM: it stops after the run in progress, if any
    proc.join(SCHEDULER_STOP_SECS)
    if proc.is_alive():
        log.warning("the scheduler's run did not end within %d s; stopping it (the next run redoes it)",
                    SCHEDULER_STOP_SECS)
        proc.kill()


def prepare_counters_for_start(settings: Settings) -> None:
    """The counters backend's start-up work, before any worker opens it (memory: the last run's
    partials folded into one; Redis: nothing)."""
    if not settings.realtime.enabled:
        return
    from beaconlake.backends.counters import prepare_counters

    kept = prepare_counters(settings.counters, state_dir=settings.realtime_path,
                            before_ms=int(time.time() * 1000) - settings.realtime.retention_hours * 3_600_000)
    if kept:
        log.info("recovered %d statistics window(s) from the last run", kept)


def prepare(settings: Settings) -> None:
    """What runs once, before any process starts; raises ConfigError or SpoolLocked."""
    from beaconlake.serve.app import create_app

    create_app(settings)  # compiles every tenant's schemas: a bad one stops us here, not in a worker
    spool.lock_spool(settings.spool_path)  # held until this process exits
    recovered = spool.recover_orphans(settings.spool_path)
    if recovered:
        log.info("recovered %d spool segment(s) left by an earlier run; delivering them", len(recovered))
    shutil.rmtree(settings.run_path / "metrics", ignore_errors=True)
    prepare_counters_for_start(settings)


def run(settings: Settings) -> int:
    """``beaconlake up``: serve until SIGTERM or SIGINT, then stop everything in order; returns
    the exit status."""
    from beaconlake.serve.http.supervisor import Supervisor

    prepare(settings)
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    deliverer = DelivererProcess(settings, level)
    deliverer.watch()
    try:
        scheduler = start_scheduler(settings, level)
        try:
            log.info("collector on http://%s:%d (%d worker(s)), lake at %s",
                     settings.server.host, settings.server.port, settings.server.workers, settings.storage)
            return Supervisor(settings, APP_FACTORY, level).run()
        finally:
            stop_scheduler(scheduler)
    finally:
        deliverer.stop()
