"""One scheduled run (pending erasures, retention, convert, then analyze) and the loop around it.

The loop runs in its own process, started by ``beaconlake up`` on a node of the ``jobs`` (or
``all``) role, so a long convert never competes with the server workers' event loops. Of every
jobs-capable node of a deployment only the one holding the jobs lease (``JOBS_LEASE``, through
the coordination seam) runs the loop: the others stand by, trying for the lease every
``POLL_SECS``, and one of them takes over within about ``coordination.lease_secs`` of the active
node's last renewal (killed, paused, cut off): no operator needed.

A run holds the run lease (``RUN_LEASE``) for its length, renewed in the background: a run is
never started while another holds it (a ``beaconlake convert`` from any node's command line),
and every commit inside a run first checks it (convert/fence.py). A run whose node lost the
lease ends 'interrupted' at its next commit, and the next run (on whichever node) marks the
runs of earlier tokens left 'running' as interrupted.

Runs asked for from any node's dashboard are rows of the run log; the active node takes them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from beaconlake.backends.coordination import (
    JOBS_LEASE,
    RUN_LEASE,
    Coordination,
    Lease,
    LeaseLost,
    RunLog,
    open_coordination,
)
from beaconlake.config import Settings
from beaconlake.errors import BackendUnavailable
from beaconlake.telemetry import Metrics
from beaconlake.units import now_ms

log = logging.getLogger("beaconlake.schedule")

POLL_SECS = 0.5


class Busy(Exception):
    """Another run holds the run lease."""


def coordination_of(settings: Settings) -> Coordination:
    """This node's handle on the ``[coordination]`` service."""
    return open_coordination(settings.coordination, run_dir=settings.run_path, node=settings.node.name)


def _summary(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    try:
        return msgspec.to_builtins(obj)
    except TypeError:
        return str(obj)


def run_once(settings: Settings, trigger: str = "manual", runs: RunLog | None = None,
             tenants: list[str] | None = None, metrics: Metrics | None = None,
             coordination: Coordination | None = None) -> dict[str, Any]:
    """Convert, then analyze, of ``tenants`` (None: every tenant), under the run lease; record the
    outcome (and count it in ``metrics``). Returns the run's record. Raises Busy (after recording
    the refusal) when another run holds the lease."""
    # imported here: the dashboard imports this module into the server workers, which need
    # neither engine nor scikit-learn
    from beaconlake.analyze.run import analyze
    from beaconlake.convert.run import convert
    from beaconlake.privacy.forget import carry_out
    from beaconlake.privacy.retention import enforce

    coord = coordination or coordination_of(settings)
    try:
        runs = runs or coord.run_log(settings.schedule.keep_runs)
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]
        lease = coord.hold(RUN_LEASE, settings.coordination.lease_secs)
        if lease is None:
            h = coord.holder(RUN_LEASE)
            exc = Busy("another run holds the run lease" + ("" if h is None else f" (node {h['holder']!r}, token {h['token']})"))
            runs.start(run_id, trigger, tenants)
            runs.finish(run_id, "refused", stage=None, error=f"{exc}: runs never overlap; this one was not started")
            log.warning("scheduled run %s (%s) refused: %s", run_id, trigger, exc)
            raise exc
        try:
            stale = runs.interrupt_stale()
            if stale:
                log.warning("%d run(s) started under an earlier run lease never finished (their node was stopped, "
                            "killed or cut off); marked interrupted", stale)
            _run(settings, run_id, trigger, runs, tenants, metrics, lease, (carry_out, enforce, convert, analyze))
        finally:
            lease.release()
        return runs.get(run_id)
    finally:
        if coordination is None:
            coord.close()


def _run(settings: Settings, run_id: str, trigger: str, runs: RunLog, tenants: list[str] | None,
         metrics: Metrics | None, lease: Lease, stages: tuple) -> None:
    carry_out, enforce, convert, analyze = stages
    started = time.monotonic()
    runs.start(run_id, trigger, tenants, lease=lease)
    stage = "erase"
    only = None if tenants is None else set(tenants)
    try:
        # pending erasures first, all in one batched pass: convert then never reads what they remove
        erased = carry_out(settings, only, wait=False, lease=lease)
        runs.update(run_id, erasures=len(erased.carried), erasures_waiting=erased.waiting)
        if metrics is not None and erased.carried:
            metrics.inc("beaconlake_erasures_carried_out_total", len(erased.carried))
        stage = "retention"
        runs.update(run_id, stage=stage)
        enforce(settings, now_ms(), only, lease=lease)
        stage = "convert"
        runs.update(run_id, stage=stage)
        summary = convert(settings, progress=False, tenants=only, lease=lease)
        runs.update(run_id, events=summary.events, new_files=summary.new_files, quarantined=len(summary.quarantined))
        if metrics is not None:
            for q in summary.quarantined:
                metrics.inc("beaconlake_convert_quarantined_files_total", tenant=q.tenant)
        stage = "analyze"
        lease.check()
        runs.update(run_id, stage=stage)
        runs.update(run_id, analyze=_summary(analyze(settings, progress=False, tenants=only)))
        runs.finish(run_id, "ok", stage=None)
        log.info("run %s (%s): convert wrote %d events from %d new file(s), then analyze, in %.1f s", run_id, trigger,
                 summary.events, summary.new_files, time.monotonic() - started)
    except LeaseLost as exc:  # another node took over: it redoes what this run did not commit
        runs.finish(run_id, "interrupted", stage=stage, error=f"LeaseLost: {exc}; this run stopped before its next "
                    "commit, and the node that took over redoes its work"[:4000])
        log.error("run %s (%s) stopped in %s: this node lost the run lease: %s", run_id, trigger, stage, exc)
        if metrics is not None:
            metrics.inc("beaconlake_schedule_runs_lease_lost_total", stage=stage)
    except Exception as exc:  # any failure of a stage is the run's outcome, not the scheduler's end
        runs.finish(run_id, "failed", stage=stage, error=f"{type(exc).__name__}: {exc}"[:4000])
        log.exception("run %s (%s) failed in %s", run_id, trigger, stage)
        if metrics is not None:
            metrics.inc("beaconlake_schedule_runs_failed_total", stage=stage)
    finally:
        if metrics is not None:
            metrics.write_snapshot()  # this process serves no /metrics: the server reads the snapshot


class Scheduler:
    """Runs on the interval and whenever a dashboard leaves a request, while this node holds the
    jobs lease; ``stop()`` ends the loop after the run in progress. (The lake sequence detector runs beside
    it in a process of its own, under a lease of its own: ``realtime/lakerun.py``.)"""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.coord = coordination_of(settings)
        self.runs = self.coord.run_log(settings.schedule.keep_runs)
        self.metrics = Metrics(settings.run_path, role="schedule")
        self.jobs: Lease | None = None  # the jobs lease, while this node is the active one
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True

    def serve(self) -> None:
        s = self.settings.schedule
        if s.enabled:
            log.info("scheduler: convert and analyze every %g min, first run %g s after this node becomes the active "
                     "jobs node", s.convert_interval_mins, s.first_run_delay_secs)
        else:
            log.info("scheduler: no runs on an interval (schedule.enabled = false); convert and analyze run only "
                     "when asked for from the dashboard")
        unreachable = False
        try:
            while not self.stopping:
                try:
                    self._turn()
                except BackendUnavailable as exc:  # the coordination service is down: stand by until it is back
                    if not unreachable:
                        log.warning("coordination service unreachable (coordination.url), trying again every %g s: %s",
                                    POLL_SECS, exc)
                    unreachable = True
                    time.sleep(POLL_SECS)
                    continue
                if unreachable:
                    log.info("coordination service reachable again")
                unreachable = False
        finally:
            self._step_down()
            self.coord.close()

    def _turn(self) -> None:
        if self.jobs is None and not self._take_over():
            time.sleep(POLL_SECS)
            return
        try:
            self.jobs.check()
        except LeaseLost as exc:
            log.error("this node (%s) is no longer the active jobs node: %s; standing by", self.coord.node, exc)
            self._step_down()
            return
        self._tick()

    def _take_over(self) -> bool:
        """Take the jobs lease if it is free; True when this node is now the active jobs node."""
        lease = self.coord.hold(JOBS_LEASE, self.settings.coordination.lease_secs)
        if lease is None:
            if not getattr(self, "_said_standby", False):
                h = self.coord.holder(JOBS_LEASE)
                log.info("standing by: the active jobs node is %s", "unknown" if h is None else repr(h["holder"]))
                self._said_standby = True
            return False
        self._said_standby = False
        self.jobs = lease
        log.info("this node (%s) is now the active jobs node (jobs lease token %d)", self.coord.node, lease.token)
        s = self.settings.schedule
        self.next_at = now_ms() + int(s.first_run_delay_secs * 1000)
        self.trigger = "startup"
        self.published = -1
        self.runs.set("interval_mins", s.convert_interval_mins)
        self.runs.set("active_node", self.coord.node)
        stale = self.runs.interrupt_stale()  # runs of a node whose run lease already expired
        if stale:
            log.warning("%d run(s) of a node that lost its lease marked interrupted", stale)
        return True

    def _step_down(self) -> None:
        if self.jobs is not None:
            self.jobs.release()
            self.jobs = None

    def _tick(self) -> None:
        """One turn of the active node's loop: a run when one is due or asked for, else a short sleep."""
        s = self.settings.schedule
        if self.next_at != self.published:  # for the Pipeline view; written when it changes, not every poll
            self.runs.set("next_run_at", self.next_at if s.enabled else None)
            self.published = self.next_at
        due = s.enabled and now_ms() >= self.next_at
        # a run from a command line holds the run lease: wait for it rather than refuse (requests stay queued)
        if (due or self.runs.requested()) and self.coord.holder(RUN_LEASE) is None:
            requested = self.runs.take_request()
            if requested or due:
                started = now_ms()
                # a due interval run covers every tenant, whatever was asked for besides
                who, tenants = requested if requested else (self.trigger, None)
                try:
                    run_once(self.settings, who, self.runs, None if due else tenants, self.metrics, self.coord)
                except Busy:
                    pass
                if due:  # the interval counts from a run's start; a run asked for in between does not move it
                    self.next_at = started + int(s.convert_interval_mins * 60_000)
                    self.trigger = "interval"
                return
        time.sleep(POLL_SECS)


def run_forever(settings: Settings, log_level: str = "INFO") -> None:
    """The scheduler process of ``beaconlake up``."""
    from beaconlake.logs import setup
    from beaconlake.procname import set_process_name

    setup(log_level)
    set_process_name("bl-schedule")
    scheduler = Scheduler(settings)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.stop())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    os.nice(5)  # analytics can wait; acknowledging events cannot
    scheduler.serve()
