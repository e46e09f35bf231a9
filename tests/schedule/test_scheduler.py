"""The scheduler: runs on the interval and on request, never two at once, every outcome recorded
(a failing run's error included), against a real raw lake and real convert runs."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from convert.rawlake import MIN, event, ms, write_raw
from support import free_port, write_config

from beaconlake import config
from beaconlake.backends.coordination import RUN_LEASE, RunLog
from beaconlake.schedule.run import Busy, Scheduler, coordination_of, run_once
from beaconlake.telemetry import Metrics


def _settings(tmp_path: Path, **schedule) -> config.Settings:
    return config.load(write_config(tmp_path, free_port(), {"schedule": schedule} if schedule else None))


def _lake(settings: config.Settings) -> Path:
    return Path(settings.storage.root)


def _visit(anon: str, start: int, n: int = 3) -> list[dict]:
    return [event(anon, start + i * MIN, tenant="demo", url=f"https://shop.example/p{i}") for i in range(n)]


def test_a_run_converts_and_records_its_outcome(tmp_path):
    settings = _settings(tmp_path)
    write_raw(_lake(settings), _visit("a1", ms("2026-03-01T10:00:00")) + _visit("a2", ms("2026-03-01T11:00:00")))
    record = run_once(settings, "manual")
    assert record["status"] == "ok", record
    assert record["events"] == 6 and record["new_files"] == 1
    assert record["trigger"] == "manual" and record["seconds"] > 0 and record["error"] is None
    # nothing new: the next run converts nothing, and is recorded too
    again = run_once(settings, "manual")
    assert (again["status"], again["events"], again["new_files"]) == ("ok", 0, 0)
    assert [r["run_id"] for r in coordination_of(settings).run_log().runs()] == [again["run_id"], record["run_id"]]


def test_a_failing_run_records_its_error_and_the_next_one_recovers(tmp_path):
    settings = _settings(tmp_path)
    [path] = write_raw(_lake(settings), _visit("a1", ms("2026-03-01T10:00:00")))
    assert run_once(settings, "manual")["status"] == "ok"
    # a converted raw file deleted from the lake: re-converting its day would lose its events
    kept = path.read_bytes()
    path.unlink()
    write_raw(_lake(settings), _visit("a2", ms("2026-03-01T11:00:00")), "seg-0002")
    metrics = Metrics(settings.run_path, role="schedule")
    failed = run_once(settings, "manual", metrics=metrics)
    assert failed["status"] == "failed" and failed["stage"] == "convert"
    assert "gone from the lake" in failed["error"] and path.name in failed["error"], failed["error"]
    assert failed["finished_at"] is not None
    assert "beaconlake_schedule_runs_failed_total{stage=\"convert\"} 1" in Metrics(settings.run_path, "reader").render()
    path.write_bytes(kept)
    ok = run_once(settings, "manual")
    assert ok["status"] == "ok" and ok["events"] == 6


def test_a_corrupt_raw_file_is_quarantined_counted_and_shown_while_the_rest_converts(tmp_path):
    from starlette.testclient import TestClient

    from beaconlake.serve.app import create_app

    settings = _settings(tmp_path)
    write_raw(_lake(settings), _visit("a1", ms("2026-03-01T10:00:00")))
    bad = _lake(settings) / "raw/tenant=demo/level=mid/year=2026/month=03/day=01/broken.parquet"
    bad.write_bytes(b"this is not parquet")
    s, t = _serve(settings)  # the scheduler process's loop, as `beaconlake up` runs it
    try:
        coordination_of(settings).run_log().request("requested (demo)", "demo")  # as the tenant's admin key asks
        [record] = _wait_runs(s.runs, 1, 60)
    finally:
        s.stop()
        t.join(30)
    assert (record["status"], record["events"], record["quarantined"]) == ("ok", 3, 1), record
    assert not bad.exists() and (_lake(settings) / "quarantine" / bad.relative_to(_lake(settings))).exists()

    headers = {"authorization": f"Bearer {settings.tenants[0].read_key}"}
    with TestClient(create_app(settings)) as client:
        metrics = client.get("/metrics").text  # summed from the scheduler's snapshot
        assert 'beaconlake_convert_quarantined_files_total{tenant="demo"} 1' in metrics
        pipeline = client.get("/v1/dashboard/pipeline", headers=headers).json()
    [q] = pipeline["quarantined"]
    assert q["key"] == "raw/tenant=demo/level=mid/year=2026/month=03/day=01/broken.parquet"
    assert q["reason"].startswith("unreadable Parquet footer") and q["run_id"]
    assert pipeline["runs"][0]["quarantined"] == 1


def test_no_two_runs_at_once(tmp_path):
    settings = _settings(tmp_path)
    coord = coordination_of(settings)
    held = coord.acquire(RUN_LEASE, 15)  # a run in progress elsewhere (`beaconlake convert`, another node)
    try:
        with pytest.raises(Busy):
            run_once(settings, "requested")
    finally:
        held.release()
    refused = coordination_of(settings).run_log().runs(1)[0]
    assert refused["status"] == "refused" and "never overlap" in refused["error"]
    assert run_once(settings, "requested")["status"] == "ok"  # and once it is free, runs go on


def _serve(settings: config.Settings) -> tuple[Scheduler, threading.Thread]:
    s = Scheduler(settings)
    t = threading.Thread(target=s.serve, daemon=True)
    t.start()
    return s, t


def _wait_runs(runs: RunLog, done: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished = [r for r in runs.runs() if r["status"] != "running"]
        if len(finished) >= done:
            return finished
        time.sleep(0.1)
    raise AssertionError(f"fewer than {done} finished runs after {timeout} s: {runs.runs()}")


def test_runs_on_the_interval(tmp_path, caplog):
    settings = _settings(tmp_path, convert_interval_mins=0.03, first_run_delay_secs=0)  # every 1.8 s
    write_raw(_lake(settings), _visit("a1", ms("2026-03-01T10:00:00")))
    with caplog.at_level(logging.INFO, logger="beaconlake.schedule"):
        s, t = _serve(settings)
        time.sleep(0.2)
    try:
        assert "scheduler: convert and analyze every 0.03 min, first run 0 s after this node becomes" in caplog.text
        runs = _wait_runs(s.runs, 2, 30)
    finally:
        s.stop()
        t.join(30)
    first, second = runs[-1], runs[-2]
    assert (first["trigger"], second["trigger"]) == ("startup", "interval")
    assert first["events"] == 3 and second["events"] == 0
    # the interval counts from a run's start
    assert second["started_at"] - first["started_at"] >= 0.03 * 60_000 - 50
    assert s.runs.state()["interval_mins"] == 0.03


def test_runs_on_request_even_with_the_interval_off(tmp_path, caplog):
    settings = _settings(tmp_path, enabled=False, first_run_delay_secs=0)
    write_raw(_lake(settings), _visit("a1", ms("2026-03-01T10:00:00")))
    with caplog.at_level(logging.INFO, logger="beaconlake.schedule"):
        s, t = _serve(settings)
        time.sleep(1.2)
    try:
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("scheduler:")]
        assert said == ["scheduler: no runs on an interval (schedule.enabled = false); convert and analyze run only "
                        "when asked for from the dashboard"]  # not "every 5 min"
        assert s.runs.runs() == []  # the interval is off: nothing runs by itself
        coordination_of(settings).run_log().request("requested (demo)")  # what the dashboard's button does
        runs = _wait_runs(s.runs, 1, 30)
    finally:
        s.stop()
        t.join(30)
    assert runs[0]["trigger"] == "requested (demo)" and runs[0]["status"] == "ok" and runs[0]["events"] == 3
    assert not s.runs.requested()  # the request was taken


def _two_tenants(tmp_path: Path) -> config.Settings:
    raw = {"tenants": [{"id": t, "write_key": f"wk_{t}{t}{t}{t}{t}", "read_key": f"rk_{t}{t}{t}{t}{t}"} for t in ("demo", "other")],
           "schedule": {"enabled": False, "first_run_delay_secs": 0}}
    return config.parse(raw, tmp_path, environ={})


def test_a_run_for_one_tenant_converts_and_analyzes_that_tenant_only(tmp_path):
    settings = _two_tenants(tmp_path)
    t = ms("2026-03-01T10:00:00")
    write_raw(_lake(settings), _visit("a1", t) + [event("o1", t + i * MIN, tenant="other") for i in range(5)])
    mine = run_once(settings, "requested (demo)", tenants=["demo"])
    assert mine["status"] == "ok" and mine["tenants"] == ["demo"]
    assert mine["events"] == 3 and [a["tenant"] for a in mine["analyze"]["tenants"]] == ["demo"]
    every = run_once(settings, "manual")  # the other tenant's events were left for the next run
    assert every["tenants"] is None and every["events"] == 5
    assert {a["tenant"] for a in every["analyze"]["tenants"]} == {"demo", "other"}


def test_requests_make_one_run_of_their_tenants(tmp_path):
    settings = _two_tenants(tmp_path)
    t = ms("2026-03-01T10:00:00")
    write_raw(_lake(settings), _visit("a1", t) + [event("o1", t + i * MIN, tenant="other") for i in range(5)])
    runs = coordination_of(settings).run_log()
    runs.request("requested (demo)", tenant="demo")
    runs.request("requested (demo)", tenant="demo")  # a second click: the same request
    assert runs.requested("demo") and not runs.requested("other")
    s, th = _serve(settings)
    try:
        [run] = _wait_runs(s.runs, 1, 30)
    finally:
        s.stop()
        th.join(30)
    assert run["tenants"] == ["demo"] and run["events"] == 3 and run["trigger"] == "requested (demo)"
    assert not runs.requested()
    # a tenant's request and the server's: one run of every tenant
    runs.request("requested (other)", tenant="other")
    runs.request("requested (server admin)")
    assert runs.take_request() == ("requested (server admin), requested (other)", None)
    assert runs.take_request() is None


def test_interval_outside_its_limits_is_a_config_error(tmp_path):
    with pytest.raises(config.ConfigError, match=r"schedule.convert_interval_mins = 0.0: must be between 0.01 and 1440"):
        _settings(tmp_path, convert_interval_mins=0)
