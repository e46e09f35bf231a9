"""Node roles and the shared coordination seam at the edges: the config check of a multi-node
role, ``beaconlake up --role``, ``beaconlake convert`` fenced by the run lease on any node, and a
collector node that runs no scheduler but beats its heart into the shared store."""

from __future__ import annotations

import re
import time

import pytest
from convert.rawlake import event, ms, write_raw
from realtime.servers import fresh_postgres_db
from support import Collector, free_port, write_config

from beaconlake import cli, config
from beaconlake.backends.coordination import JOBS_LEASE, RUN_LEASE, LeaseLost
from beaconlake.backends.coordination.postgres import PostgresCoordination
from beaconlake.convert.fence import FencedStore
from beaconlake.convert.run import convert, open_store
from beaconlake.errors import ConfigError


def _raw(tmp_path, coordination: dict | None = None, role: str | None = None) -> dict:
    raw = {"data_dir": str(tmp_path / "data"),
           "tenants": [{"id": "shop", "write_key": "wk_shop_" + "a" * 16, "read_key": "rk_shop_" + "b" * 16}]}
    if coordination:
        raw["coordination"] = coordination
    if role:
        raw["node"] = {"id": "n1", "role": role}
    return raw


@pytest.mark.parametrize("role", ["collector", "jobs"])
def test_a_multi_node_role_on_local_coordination_is_a_config_error_naming_the_setting(tmp_path, role):
    with pytest.raises(ConfigError, match=rf"node.role = '{role}'.*coordination.type = 'local'.*\"postgres\""):
        config.parse(_raw(tmp_path, role=role), tmp_path, environ={})
    # with a shared service it is fine, and `all` (one machine) is fine on local
    pg = {"type": "postgres", "url": "postgresql://db.internal/beaconlake"}
    assert config.parse(_raw(tmp_path, pg, role), tmp_path, environ={}).node.role == role
    assert config.parse(_raw(tmp_path, role="all"), tmp_path, environ={}).node.runs_jobs


def test_up_role_flag_overrides_the_config_and_is_checked_the_same_way(tmp_path, capsys):
    path = write_config(tmp_path, free_port())
    assert cli.main(["up", "--config", str(path), "--role", "collector"]) == 2
    err = capsys.readouterr().err
    assert "--role = 'collector'" in err and "coordination.type = 'local'" in err
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["up", "--role", "leader"])
    assert "invalid choice: 'leader'" in capsys.readouterr().err


def test_convert_from_any_node_waits_for_the_run_lease_and_a_lost_lease_commits_nothing(tmp_path, capsys):
    dsn = fresh_postgres_db()
    raw = _raw(tmp_path, {"type": "postgres", "url": dsn, "lease_secs": 1.0}, "jobs")
    settings = config.parse(raw, tmp_path, environ={})
    write_raw(tmp_path / "data" / "lake", [event("a", ms("2026-03-10T10:00:00"), tenant="shop")])
    other = PostgresCoordination(dsn, "jobs-elsewhere")
    held = other.acquire(RUN_LEASE, 30)
    cfg = tmp_path / "beaconlake.toml"
    cfg.write_text(f'data_dir = "data"\n[node]\nid = "n1"\nrole = "jobs"\n[coordination]\ntype = "postgres"\n'
                   f'url = "{dsn}"\n[[tenants]]\nid = "shop"\nwrite_key = "wk_shop_{"a" * 16}"\n'
                   f'read_key = "rk_shop_{"b" * 16}"\n')
    assert cli.main(["convert", "--config", str(cfg), "--no-progress"]) == 2
    assert "another convert run holds the run lease: node 'jobs-elsewhere'" in capsys.readouterr().err
    held.release()
    assert cli.main(["convert", "--config", str(cfg), "--no-progress"]) == 0  # free again: it runs
    store = open_store(settings)
    before = store.converted()
    assert len(before) == 1

    # a run whose lease passed on meanwhile (its node paused past the ttl) commits nothing
    write_raw(tmp_path / "data" / "lake", [event("b", ms("2026-03-11T10:00:00"), tenant="shop")], "seg-0002")
    mine = PostgresCoordination(dsn, "n1")
    lease = mine.acquire(RUN_LEASE, 1.0)
    time.sleep(1.2)
    assert other.acquire(RUN_LEASE, 30) is not None
    with pytest.raises(LeaseLost):
        convert(settings, progress=False, lease=lease)
    store = open_store(settings)
    assert store.converted() == before
    assert store.table("events").scan().to_arrow().num_rows == 1
    # every commit through the run's catalog is fenced, not only the store's own commit methods
    # (pyiceberg's retry of a conflicting commit goes through the same catalog object)
    fenced = FencedStore(open_store(settings, hold=True), lease)
    table = fenced.table("converted_files")
    rows = table.scan().to_arrow()
    with pytest.raises(LeaseLost):
        table.append(rows)
    assert open_store(settings).table("converted_files").scan().to_arrow().num_rows == rows.num_rows
    other.close()
    mine.close()


def test_a_collector_node_runs_no_scheduler_and_sends_heartbeats(tmp_path):
    dsn = fresh_postgres_db()
    port = free_port()
    path = write_config(tmp_path, port, {
        "node": {"id": "collector-1"},
        "coordination": {"type": "postgres", "url": dsn, "heartbeat_secs": 0.3},
        "schedule": {"first_run_delay_secs": 0, "convert_interval_mins": 0.01},
        "realtime": {"sequences_from": "lake"},  # the test tenant defines sequences: one detector for all nodes
    })
    node = Collector(tmp_path, port, path, "", "", tmp_path / "up.log", extra_args=["--role", "collector"]).start()
    coord = PostgresCoordination(dsn, "test")
    try:
        write_raw(node.data_dir / "lake", [event("a", ms("2026-03-10T10:00:00"), tenant="demo")])

        def beating():
            rows = coord.nodes()
            return rows if rows and rows[0]["info"].get("events_accepted") is not None else None

        deadline = time.monotonic() + 20
        while not beating() and time.monotonic() < deadline:
            time.sleep(0.1)
        [me] = coord.nodes()
        assert (me["node"], me["role"]) == ("collector-1", "collector")
        info = me["info"]
        assert info["jobs_capable"] is False and info["jobs_active"] is False
        assert {"spool_undelivered_bytes", "spool_segments", "delivery_lag_seconds", "ingest_events_per_sec"} <= set(info)
        first = me["seen_ms"]
        time.sleep(1.5)  # the interval would have run by now on a jobs node
        assert coord.nodes()[0]["seen_ms"] > first  # still beating
        assert coord.holder(JOBS_LEASE) is None and coord.run_log().runs() == []
        assert "bl-schedule" not in _children_names(node.proc.pid)
    finally:
        node.stop()
        coord.close()


def _children_names(pid: int) -> str:
    import subprocess

    return subprocess.run(["ps", "-o", "comm=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout


def test_a_scheduler_whose_coordination_service_is_down_stands_by_and_says_so(tmp_path, caplog):
    import logging
    import threading

    from beaconlake.schedule.run import Scheduler

    port = free_port()  # nothing listens there
    raw = _raw(tmp_path, {"type": "postgres", "url": f"postgresql://postgres@127.0.0.1:{port}/none?connect_timeout=1"},
               "jobs")
    settings = config.parse(raw, tmp_path, environ={})
    s = Scheduler(settings)
    with caplog.at_level(logging.INFO, logger="beaconlake.schedule"):
        t = threading.Thread(target=s.serve, daemon=True)
        t.start()
        time.sleep(2.5)
        s.stop()
        t.join(15)
    assert not t.is_alive()  # it neither crashed nor hung: it stood by and stopped when asked
    said = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(said) == 1 and "coordination.url" in said[0] and f"127.0.0.1:{port}" in said[0]
    assert s.jobs is None


@pytest.mark.parametrize("section, message", [
    ({"type": "postgres", "url": "mysql://db/x"}, "coordination.url = 'mysql://db/x': not a PostgreSQL connection string"),
    ({"type": "postgres", "lease_secs": 0.5}, "coordination.lease_secs = 0.5: must be between 1 and 3600 seconds"),
    ({"type": "local", "heartbeat_secs": 7200}, "coordination.heartbeat_secs = 7200.0: must be between 0.1 and 3600"),
    ({"type": "etcd"}, "etcd"),
])
def test_bad_coordination_settings_name_the_key_the_value_and_the_limit(tmp_path, section, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.parse(_raw(tmp_path, section), tmp_path, environ={})


def test_with_the_catalog_in_the_coordination_database_the_commit_itself_is_fenced(tmp_path):
    """The window check() leaves (a pause after it, inside the commit) closed: the takeover is
    made to happen exactly there, between the check and the catalog's compare-and-swap."""
    import psycopg
    from sqlalchemy import event as sa_event

    dsn = fresh_postgres_db()
    p = dict(part.split("=", 1) for part in dsn.split())
    raw = _raw(tmp_path, {"type": "postgres", "url": dsn}, "jobs")
    raw["catalog"] = {"type": "sql", "uri": f"postgresql+psycopg://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}"}
    settings = config.parse(raw, tmp_path, environ={})
    write_raw(tmp_path / "data" / "lake", [event("a", ms("2026-03-10T10:00:00"), tenant="shop")])
    convert(settings, progress=False)  # the tables exist, one file converted
    mine, other = PostgresCoordination(dsn, "n1"), PostgresCoordination(dsn, "n2")
    inner = open_store(settings, hold=True)
    taken = []

    def pause_then_takeover(conn, cursor, statement, *args):  # registered first: runs before the fence
        if statement.lstrip().lower().startswith("update iceberg_tables") and not taken:
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute("update coord_leases set expires_at = clock_timestamp() - interval '1 second' "
                              "where name = %s", (RUN_LEASE,))
            taken.append(other.acquire(RUN_LEASE, 30))

    sa_event.listen(inner.catalog.engine, "before_cursor_execute", pause_then_takeover)
    lease = mine.acquire(RUN_LEASE, 30)
    store = FencedStore(inner, lease)
    assert store.in_transaction
    table = store.table("converted_files")
    rows = table.scan().to_arrow()
    with pytest.raises(LeaseLost, match="commit refused by the catalog database"):
        table.append(rows)  # check() passed: the lease was live until the pause
    assert taken and taken[0] is not None and taken[0].token == lease.token + 1
    after = open_store(settings).table("converted_files").scan().to_arrow()
    assert after.num_rows == rows.num_rows == 1
    mine.close()
    other.close()
