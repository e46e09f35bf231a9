"""The composition root of a running pipeline: which processes ``beaconlake up`` runs, what each
is built from, and how they start, restart and stop.

The processes:

- **HTTP server** (``serve/http/supervisor``): one socket, ``server.workers`` processes, each
  serving ``serve.app.create_app``; a dead worker is restarted by the supervisor.
- **Lake deliverer** (``ingest.deliver``), with the realtime consumer injected when
  ``realtime.enabled``; restarted within a second when it dies, so acknowledged events keep
  flowing to the lake.
- **Scheduler** (``schedule.run``): convert + analyze in a process of its own, never in a
  server worker's request path; restarted like the deliverer. Only on a node whose role runs
  jobs (``all``, ``jobs``); of several such nodes only the holder of the jobs lease runs it.
- **Heartbeat** (``serve.heartbeat``, a thread of this process): the node's role and figures in
  the coordination store, for every node's Pipeline view.

Roles (``node.role``, or ``beaconlake up --role``): ``all`` runs everything (one machine);
``collector`` runs the server and the deliverer, no scheduler; ``jobs`` runs the scheduler, and
the server and deliverer too: its server answers the dashboard, the read API, ``/healthz`` and
``/metrics``, and since that same server would acknowledge an event sent to it (a misrouted load
balancer), the deliverer runs beside it so no acknowledged event is ever left in a spool that
nothing delivers. Point the event load balancer at the collectors only.
- **Lake sequence detector** (``realtime.lakerun``), on a node that runs jobs when
  ``realtime.sequences_from = "lake"``; restarted like the deliverer.

The processes carry names (``bl-up``, ``bl-worker``, ``bl-deliver``, ``bl-schedule``, ``bl-sequences``) that
``ps``, ``top`` and the OOM killer's log show.

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
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

from beaconlake.backends.storage import Storage, open_storage
from beaconlake.config import Settings
from beaconlake.ingest import deliver, spool
from beaconlake.ingest.deliver import Deliverer, PreDelivery
from beaconlake.procname import set_process_name
from beaconlake.telemetry import Metrics

log = logging.getLogger(__name__)

APP_FACTORY = "beaconlake.serve.app:create_app"  # what each server worker imports and calls
# A convert run is crash-safe (its batches are redone), so shutdown need not wait for a long one.
SCHEDULER_STOP_SECS = 20
PARENT_CHECK_SECS = 1.0  # how often a helper process checks that up is still there
WATCH_SECS = 1.0  # how often the helper processes' liveness is checked
ROLE_PARTS = {
    "all": "HTTP server, lake delivery and the scheduler (one machine)",
    "collector": "HTTP server and lake delivery; no scheduler (a jobs node converts)",
    "jobs": "the scheduler (active while this node holds the jobs lease), with the HTTP server for the dashboard, "
            "API, /healthz and /metrics, and lake delivery for anything it accepts",
}


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


def stop_with_parent(role: str) -> None:
    """SIGTERM ourselves once the ``up`` that started us is gone (kill -9, the OOM killer), as
    the server workers stop when their supervisor is: a helper left running would go on beside
    the next ``up``'s own, two deliverers and two schedulers on one spool and one warehouse.
    SIGTERM is the clean stop: the deliverer drains, the scheduler ends its run."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECS)
        log.error("beaconlake up (pid %d) is gone; the %s process (pid %d) stops", parent, role, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_deliverer(settings: Settings, log_level: str = "INFO") -> None:
    """The deliverer process's target (picklable: ``spawn`` starts it in a fresh interpreter)."""
    stop_with_parent("lake delivery")
    deliver.run_forever(functools.partial(build_deliverer, settings), log_level)


class KeptAlive:
    """A helper process of ``up`` (the deliverer, the scheduler), started again within
    ``WATCH_SECS`` when it dies while we run (kill -9, the OOM killer, a crash): acknowledged
    events must keep flowing to the lake, and convert runs must go on, without an operator."""

    def __init__(self, role: str, name: str, target: Callable[[Settings, str], None], settings: Settings,
                 log_level: str) -> None:
        self.role, self.name, self.target = role, name, target  # role: for the log; name: of the process
        self.settings = settings
        self.log_level = log_level
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()  # no restart may slip in between stop() and its terminate()
        self._stopped = threading.Event()
        self.proc = self._spawn()
        threading.Thread(target=self._watch, name=f"{name}-watch", daemon=True).start()

    def _spawn(self) -> BaseProcess:
        proc = self._ctx.Process(target=self.target, args=(self.settings, self.log_level), name=self.name)
        proc.start()
        return proc

    def _watch(self) -> None:
        while not self._stopped.wait(WATCH_SECS):
            with self._lock:
                if not self.proc.is_alive() and not self._stopped.is_set():
                    log.error("%s process exited with code %s; restarting it", self.role, self.proc.exitcode)
                    try:
                        self.proc = self._spawn()
                    except OSError as exc:  # out of processes, memory or descriptors: the next tick tries again
                        log.error("cannot start the %s process: %s", self.role, exc)

    def stop(self, wait_secs: float) -> None:
        """SIGTERM (the deliverer drains what the workers sealed; the scheduler ends the run in
        progress), then SIGKILL after ``wait_secs`` (a convert run is crash-safe: the next redoes it)."""
        with self._lock:
            self._stopped.set()
            proc = self.proc
        if not proc.is_alive():
            return
        proc.terminate()
        proc.join(wait_secs)
        if proc.is_alive():
            log.warning("the %s process did not stop within %d s of SIGTERM; killing it", self.role, wait_secs)
            proc.kill()
            proc.join()


def run_scheduler(settings: Settings, log_level: str = "INFO") -> None:
    from beaconlake.schedule.run import run_forever

    stop_with_parent("scheduler")
    run_forever(settings, log_level)


def run_lake_sequences(settings: Settings, log_level: str = "INFO") -> None:
    from beaconlake.realtime.lakerun import run_process

    stop_with_parent("sequence detection")
    run_process(settings, log_level)


def lake_sequences(settings: Settings, log_level: str) -> KeptAlive | None:
    """The lake detector (``realtime/lakerun.py``) on a node that runs jobs, when
    ``realtime.sequences_from = "lake"``: one process per jobs node, one detecting at a time (its lease)."""
    rt = settings.realtime
    if not (settings.node.runs_jobs and rt.enabled and rt.sequences_from == "lake"):
        return None
    return KeptAlive("sequence detection", "beaconlake-sequences", run_lake_sequences, settings, log_level)


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

    from beaconlake.serve.heartbeat import Heartbeat

    prepare(settings)
    set_process_name("bl-up")
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    node = settings.node
    log.info("node %s, role %s: %s", node.name, node.role, ROLE_PARTS[node.role])
    heartbeat = Heartbeat(settings)
    heartbeat.start()
    deliverer = KeptAlive("lake delivery", "beaconlake-deliver", run_deliverer, settings, level)
    try:
        scheduler = KeptAlive("scheduler", "beaconlake-schedule", run_scheduler, settings, level) if node.runs_jobs else None
        sequences = lake_sequences(settings, level)
        try:
            log.info("collector on http://%s:%d (%d worker(s)), lake at %s",
                     settings.server.host, settings.server.port, settings.server.workers, settings.storage)
            return Supervisor(settings, APP_FACTORY, level).run()
        finally:
            if scheduler is not None:
                scheduler.stop(SCHEDULER_STOP_SECS)
            if sequences is not None:
                sequences.stop(SCHEDULER_STOP_SECS)  # a step is short; its checkpoint makes a cut one safe
    finally:
        deliverer.stop(settings.delivery.drain_timeout_secs + 5)
        heartbeat.stop()
