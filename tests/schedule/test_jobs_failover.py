"""Two jobs nodes, each a real ``beaconlake up --role jobs`` on its own data folder, sharing only
PostgreSQL (coordination and the Iceberg SQL catalog), the raw lake and the warehouse folder:

- only the holder of the jobs lease converts; both dashboards show both nodes and every run, and
  "Run now" on the standby's dashboard reaches the active node;
- the active node paused (SIGSTOP to its whole process group) past its lease mid-convert: the
  standby takes over, marks the paused run interrupted and converts; resumed (SIGCONT), the
  paused node's run stops at its next commit (the run lease is gone) and it stands by;
- the active node killed with -9: the other takes over without an operator.

After each step every raw file is in ``converted_files`` once and every event in ``events`` once.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg
import pytest
from convert.rawlake import MIN, event, ms, write_raw
from realtime.servers import fresh_postgres_db
from support import Collector, free_port, write_config

from beaconlake import config
from beaconlake.backends.coordination import JOBS_LEASE
from beaconlake.backends.coordination.postgres import PostgresCoordination
from beaconlake.convert.catalog import RUN_PROPERTY
from beaconlake.convert.run import open_store

pytestmark = pytest.mark.slow

ADMIN = "sa_" + "k" * 24
LEASE_SECS = 5.0  # long enough that a renewal starved by a busy shared machine does not lose it


def _sqlalchemy_url(dsn: str) -> str:
    p = dict(part.split("=", 1) for part in dsn.split())
    return f"postgresql+psycopg://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}"


def _node(tmp_path: Path, name: str, dsn: str, shared: Path, tenant: dict | None) -> Collector:
    folder = tmp_path / name
    folder.mkdir()
    port = free_port()
    overrides = {
        "node": {"id": name},
        "server": {"admin_key": ADMIN, "workers": 1},
        "coordination": {"type": "postgres", "url": dsn, "lease_secs": LEASE_SECS, "heartbeat_secs": 0.5},
        "storage": {"type": "local", "root": str(shared / "lake")},
        "catalog": {"type": "sql", "uri": _sqlalchemy_url(dsn)},
        "convert": {"warehouse": str(shared / "warehouse")},
        "schedule": {"convert_interval_mins": 0.02, "first_run_delay_secs": 0},
        "realtime": {"enabled": False},
    }
    if tenant:
        overrides["tenant"] = tenant
    path = write_config(folder, port, overrides)
    settings = config.load(path)
    t = settings.tenants[0]
    return Collector(folder, port, path, t.write_key, t.read_key or "", folder / "up.log", extra_args=["--role", "jobs"])


def _events(tenant: str, first_day: str, days: int, per_day: int, tag: str) -> list[dict]:
    start = ms(first_day + "T08:00:00")
    return [event(f"{tag}-p{i % 7}", start + d * 86_400_000 + i * MIN, tenant=tenant, url=f"https://shop.example/{i}")
            for d in range(days) for i in range(per_day)]


def _deliver(shared: Path, events: list[dict], segment: str) -> None:
    """Put raw files into the lake as the deliverer does: whole, by rename. (Written in place, a
    run that lists the lake mid-write records a half-written file's size, and the whole file is
    then new to the next run.)"""
    staging = shared / "staging" / segment
    for path in write_raw(staging, events, segment):
        dest = shared / "lake" / path.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)


def _wait(what: str, check, timeout: float = 60.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s: {what}")


def _tables(settings: config.Settings) -> tuple[Counter, Counter]:
    """(raw key -> rows in converted_files, event_id -> rows in events)."""
    store = open_store(settings)
    converted = Counter(store.table("converted_files").scan(selected_fields=("raw_key",)).to_arrow()["raw_key"].to_pylist())
    events = Counter(store.table("events").scan(selected_fields=("event_id",)).to_arrow()["event_id"].to_pylist())
    return converted, events


def _assert_exactly_once(settings: config.Settings, raw_root: Path, written: list[dict]) -> None:
    converted, events = _tables(settings)
    raw_keys = {str(p.relative_to(raw_root)) for p in raw_root.rglob("*.parquet")}
    if max(converted.values()) > 1:  # which runs wrote the rows, for whoever has to find out why
        snaps = [(x.summary.additional_properties.get(RUN_PROPERTY), x.summary.get("added-records"))
                 for x in open_store(settings).table("converted_files").snapshots()]
        raise AssertionError(f"duplicate converted_files rows {converted.most_common(3)}; snapshots (run, rows): {snaps}")
    assert set(converted) == raw_keys, converted
    assert set(events) == {e["event_id"] for e in written} and max(events.values()) == 1


def _group_signal(node: Collector, sig: int) -> None:
    os.killpg(node.proc.pid, sig)


def test_one_active_jobs_node_takes_over_from_a_paused_or_killed_one_and_fencing_refuses_the_late_commit(tmp_path):
    dsn = fresh_postgres_db()
    shared = tmp_path / "shared"
    lake = shared / "lake"
    a = _node(tmp_path, "jobs-a", dsn, shared, None)
    settings_a = config.load(a.config_path)
    t = settings_a.tenants[0]
    b = _node(tmp_path, "jobs-b", dsn, shared, {"write_key": t.write_key, "read_key": t.read_key,
                                                 "admin_key": t.admin_key})
    coord = PostgresCoordination(dsn, "test")
    runs = coord.run_log()
    tenant = t.id
    written = _events(tenant, "2026-03-01", 4, 40, "one")
    _deliver(shared, written, "seg-0001")
    try:
        a.start(timeout=60)
        _wait("jobs-a is the active jobs node", lambda: (coord.holder(JOBS_LEASE) or {}).get("holder") == "jobs-a")
        b.start(timeout=60)

        # -- one active node: it alone converts; both dashboards see both nodes and every run
        _wait("the first batch converted", lambda: any(r["status"] == "ok" and r["events"] for r in runs.runs(50)))
        assert {r["node"] for r in runs.runs(200)} == {"jobs-a"}
        _assert_exactly_once(settings_a, lake, written)
        auth = {"authorization": f"Bearer {ADMIN}"}

        def both_nodes_beating():
            views = [httpx.get(f"{n.url}/v1/dashboard/pipeline", headers=auth, timeout=10).json() for n in (a, b)]
            names = [{x["node"]: x["info"]["jobs_active"] for x in v["nodes"]} for v in views]
            return views if names[0] == names[1] == {"jobs-a": True, "jobs-b": False} else None

        views = _wait("both nodes' heartbeats on both dashboards", both_nodes_beating, 30)
        assert all(v["active_jobs_node"] == "jobs-a" for v in views)
        r = httpx.post(f"{b.url}/v1/dashboard/pipeline/run", headers=auth, timeout=10)  # Run now, on the standby
        assert r.status_code == 200
        asked = _wait("the standby's request run by the active node", lambda: [
            x for x in runs.runs(50) if x["trigger"] == "requested (server admin)" and x["status"] == "ok"], 30)
        assert asked[0]["node"] == "jobs-a"

        # -- the active node paused past its lease in the middle of a convert run
        second = _events(tenant, "2026-03-10", 12, 60, "two")
        _deliver(shared, second, "seg-0002")
        written += second
        since = int(time.time() * 1000)
        paused = _wait("a convert run of jobs-a over the new files", lambda: [
            x for x in runs.runs(5) if x["node"] == "jobs-a" and x["status"] == "running"
            and x["stage"] == "convert" and x["started_at"] >= since], 60, every=0.01)[0]
        _group_signal(a, signal.SIGSTOP)
        stopped_at = time.monotonic()
        _wait("jobs-b takes the jobs lease", lambda: (coord.holder(JOBS_LEASE) or {}).get("holder") == "jobs-b",
              LEASE_SECS * 4)
        took_over = time.monotonic() - stopped_at
        print(f"jobs-b took the jobs lease {took_over:.1f} s after jobs-a was paused (lease_secs = {LEASE_SECS:g})")
        done = _wait("jobs-b converts the new files", lambda: [
            x for x in runs.runs(50) if x["node"] == "jobs-b" and x["status"] == "ok" and x["events"]], 90)
        assert done
        assert runs.get(paused["run_id"])["status"] == "interrupted"
        _group_signal(a, signal.SIGCONT)
        _wait("jobs-a stands by after waking", lambda: "no longer the active jobs node" in a.log_path.read_text(), 30)
        log_a = a.log_path.read_text()
        # the paused run went on after SIGCONT and was refused at its next commit
        assert re.search(rf"run {paused['run_id']} \(interval\) stopped in \w+: this node lost the run lease", log_a), \
            log_a[-3000:]
        time.sleep(LEASE_SECS)  # whatever the woken node might still do, give it the time to try
        assert runs.get(paused["run_id"])["status"] == "interrupted"
        _assert_exactly_once(settings_a, lake, written)
        assert took_over < LEASE_SECS * 3

        # -- the active node killed with -9: the other takes over without an operator
        killed_at, killed_ms = time.monotonic(), int(time.time() * 1000)
        b.kill()
        third = _events(tenant, "2026-04-01", 2, 30, "three")
        _deliver(shared, third, "seg-0003")
        written += third
        _wait("jobs-a takes over from the killed jobs-b", lambda: (coord.holder(JOBS_LEASE) or {}).get("holder") == "jobs-a",
              LEASE_SECS * 4)
        print(f"jobs-a took the jobs lease {time.monotonic() - killed_at:.1f} s after kill -9 of jobs-b")
        _wait("jobs-a converts the files that came after the kill", lambda: [
            x for x in runs.runs(50) if x["node"] == "jobs-a" and x["started_at"] >= killed_ms and x["status"] == "ok"
            and x["events"]], 90)
        _assert_exactly_once(settings_a, lake, written)
    finally:
        for n in (a, b):
            if n.proc is not None and n.proc.poll() is None:
                try:
                    _group_signal(n, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                n.stop()
        coord.close()
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("select 1")


def test_postgres_restarted_under_the_active_jobs_node_costs_runs_not_data(tmp_path):
    """PostgreSQL (coordination and catalog) crashed under a running jobs node and started again a
    while later: the node neither exits nor needs an operator; no run claims success while the
    database is away; once it is back the node is the active one again and converts what arrived
    meanwhile, every event once."""
    from faults.fault_services import PostgresServer

    pg = PostgresServer()
    shared = tmp_path / "shared"
    lake = shared / "lake"
    node = _node(tmp_path, "jobs-a", pg.dsn, shared, None)
    settings = config.load(node.config_path)
    written = _events(settings.tenants[0].id, "2026-05-01", 3, 40, "before")
    _deliver(shared, written, "seg-0001")
    coord = None
    try:
        node.start(timeout=60)
        coord = PostgresCoordination(pg.dsn, "test")
        runs = coord.run_log()
        _wait("the first batch converted", lambda: any(r["status"] == "ok" and r["events"] for r in runs.runs(50)))
        _assert_exactly_once(settings, lake, written)

        pg.crash()
        down_ms = int(time.time() * 1000)
        during = _events(settings.tenants[0].id, "2026-05-10", 2, 30, "during")
        _deliver(shared, during, "seg-0002")
        written += during
        time.sleep(LEASE_SECS * 3)  # past its lease: the node cannot know whether another one took over
        assert node.proc.poll() is None, node.log_path.read_text()[-3000:]
        assert httpx.get(f"{node.url}/healthz", timeout=10).status_code == 200  # alive, for a supervisor
        pg.start()
        up_ms = int(time.time() * 1000)

        _wait("a run after the restart converts what arrived meanwhile", lambda: [
            r for r in runs.runs(50) if r["status"] == "ok" and r["started_at"] >= up_ms and r["events"]], 120)
        _assert_exactly_once(settings, lake, written)
        assert (coord.holder(JOBS_LEASE) or {}).get("holder") == "jobs-a"
        # whatever ran into the outage is recorded as not done; none of it says ok
        for r in runs.runs(200):
            if down_ms <= r["started_at"] < up_ms:
                assert r["status"] != "ok", r
        assert node.proc.poll() is None
    finally:
        if coord is not None:
            coord.close()
        node.stop()
        pg.close()
