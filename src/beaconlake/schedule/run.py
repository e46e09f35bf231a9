"""One scheduled run (pending erasures, retention, convert, then analyze) and the loop around it.

The loop runs in its own process, started by ``beaconlake up`` next to the lake deliverer, so a
long convert never competes with the server workers' event loops. A run holds
``<data_dir>/run/schedule.lock``: a run asked for while another holds it (from this loop or a
second ``beaconlake up`` on the same data folder) is refused and recorded as such, never run in
parallel. Convert's own lock also keeps ``beaconlake convert`` from the command line out.
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

from beaconlake.config import Settings
from beaconlake.locks import RunLock
from beaconlake.schedule.state import RunLog
from beaconlake.units import now_ms
from beaconlake.telemetry import Metrics

log = logging.getLogger("beaconlake.schedule")

POLL_SECS = 0.5


class Busy(Exception):
    """Another run holds the schedule lock."""


def _summary(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    try:
        return msgspec.to_builtins(obj)
    except TypeError:
        return str(obj)


def run_once(settings: Settings, trigger: str = "manual", runs: RunLog | None = None,
             tenants: list[str] | None = None, metrics: Metrics | None = None) -> dict[str, Any]:
    """Convert, then analyze, of ``tenants`` (None: every tenant); record the outcome (and count it
    in ``metrics``). Returns the run's record. Raises Busy (after recording the refusal) when
    another run is going on."""
    # imported here: the dashboard imports this module into the server workers, which need
    # neither engine nor scikit-learn
    from beaconlake.analyze.run import analyze
    from beaconlake.convert.run import convert
    from beaconlake.privacy.forget import carry_out
    from beaconlake.privacy.retention import enforce

    runs = runs or RunLog(settings.run_path, settings.schedule.keep_runs)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]
    try:
        lock = RunLock(settings.run_path / "schedule.lock", lambda path: Busy(f"another run holds {path}"))
    except Busy as exc:
        runs.start(run_id, trigger, tenants)
        runs.finish(run_id, "refused", stage=None, error=f"{exc}: runs never overlap; this one was not started")
        log.warning("scheduled run %s (%s) refused: %s", run_id, trigger, exc)
        raise
    started = time.monotonic()
    runs.start(run_id, trigger, tenants)
    stage = "erase"
    only = None if tenants is None else set(tenants)
    try:
        # pending erasures first, all in one batched pass: convert then never reads what they remove
        erased = carry_out(settings, only, wait=False)
        runs.update(run_id, erasures=len(erased.carried), erasures_waiting=erased.waiting)
        if metrics is not None and erased.carried:
            metrics.inc("beaconlake_erasures_carried_out_total", len(erased.carried))
        stage = "retention"
        runs.update(run_id, stage=stage)
        enforce(settings, now_ms(), only)
        stage = "convert"
        runs.update(run_id, stage=stage)
        summary = convert(settings, progress=False, tenants=only)
        runs.update(run_id, events=summary.events, new_files=summary.new_files, quarantined=len(summary.quarantined))
        if metrics is not None:
            for q in summary.quarantined:
                metrics.inc("beaconlake_convert_quarantined_files_total", tenant=q.tenant)
        stage = "analyze"
        runs.update(run_id, stage=stage)
        runs.update(run_id, analyze=_summary(analyze(settings, progress=False, tenants=only)))
        runs.finish(run_id, "ok", stage=None)
        log.info("run %s (%s): convert wrote %d events from %d new file(s), then analyze, in %.1f s", run_id, trigger,
                 summary.events, summary.new_files, time.monotonic() - started)
    except Exception as exc:  # any failure of a stage is the run's outcome, not the scheduler's end
        runs.finish(run_id, "failed", stage=stage, error=f"{type(exc).__name__}: {exc}"[:4000])
        log.exception("run %s (%s) failed in %s", run_id, trigger, stage)
        if metrics is not None:
            metrics.inc("beaconlake_schedule_runs_failed_total", stage=stage)
    finally:
        lock.release()
        if metrics is not None:
            metrics.write_snapshot()  # this process serves no /metrics: the server reads the snapshot
    return runs.get(run_id)


class Scheduler:
    """Runs on the interval and whenever the dashboard leaves a request; ``stop()`` ends the loop
    after the run in progress."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runs = RunLog(settings.run_path, settings.schedule.keep_runs)
        self.metrics = Metrics(settings.run_path, role="schedule")
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True

    def serve(self) -> None:
        s = self.settings.schedule
        if s.enabled:
            log.info("scheduler: convert and analyze every %g min, first run in %g s", s.convert_interval_mins,
                     s.first_run_delay_secs)
        else:
            log.info("scheduler: no runs on an interval (schedule.enabled = false); convert and analyze run only "
                     "when asked for from the dashboard")
        interval_ms = int(s.convert_interval_mins * 60_000)
        stale = self.runs.interrupt_stale()
        if stale:
            log.warning("%d run(s) were cut short by the last shutdown; marked interrupted", stale)
        next_at = now_ms() + int(s.first_run_delay_secs * 1000)
        trigger = "startup"
        self.runs.set("interval_mins", s.convert_interval_mins)
        published = -1
        while not self.stopping:
            if next_at != published:  # for the Pipeline view; written when it changes, not every poll
                self.runs.set("next_run_at", next_at if s.enabled else None)
                published = next_at
            requested = self.runs.take_request()
            due = s.enabled and now_ms() >= next_at
            if requested or due:
                started = now_ms()
                # a due interval run covers every tenant, whatever was asked for besides
                who, tenants = requested if requested else (trigger, None)
                try:
                    run_once(self.settings, who, self.runs, None if due else tenants, self.metrics)
                except Busy:
                    pass
                if due:  # the interval counts from a run's start; a run asked for in between does not move it
                    next_at = started + interval_ms
                    trigger = "interval"
                continue
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
