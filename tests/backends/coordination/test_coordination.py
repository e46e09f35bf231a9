"""The coordination contract, against both backends: local (flock + SQLite, two handles on one
data folder as two processes of one machine) and PostgreSQL (a real server, two handles as two
machines). Expiry exists on PostgreSQL only: a local lease ends when its holder's process does,
which the kill -9 test shows with a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from realtime.servers import fresh_postgres_db

from beaconlake.backends.coordination import JOBS_LEASE, RUN_LEASE, LeaseLost
from beaconlake.backends.coordination.local import LocalCoordination


@pytest.fixture(params=["local", "postgres"])
def make(request, tmp_path):
    """``make(node)``: a new handle on one shared coordination service, as node ``node``."""
    opened = []
    dsn = fresh_postgres_db() if request.param == "postgres" else None

    def make(node: str):
        if dsn is not None:
            from beaconlake.backends.coordination.postgres import PostgresCoordination

            c = PostgresCoordination(dsn, node)
        else:
            c = LocalCoordination(tmp_path / "run", node)
        opened.append(c)
        return c

    make.kind = request.param
    yield make
    for c in opened:
        c.close()


@pytest.fixture
def pg():
    from beaconlake.backends.coordination.postgres import PostgresCoordination

    dsn = fresh_postgres_db()
    opened = []

    def make(node: str):
        opened.append(PostgresCoordination(dsn, node))
        return opened[-1]

    yield make
    for c in opened:
        c.close()


def test_a_lease_has_one_holder_and_its_token_grows_with_each_new_one(make):
    a, b = make("node-a"), make("node-b")
    first = a.acquire(JOBS_LEASE, 30)
    assert first is not None and first.holder == "node-a"
    assert b.acquire(JOBS_LEASE, 30) is None  # held: refused at once
    assert a.acquire(JOBS_LEASE, 30) is None  # a second acquisition by the same node is refused too
    assert b.holder(JOBS_LEASE)["holder"] == "node-a" and b.holder(JOBS_LEASE)["token"] == first.token
    first.check()
    assert first.renew()
    first.release()
    assert b.holder(JOBS_LEASE) is None
    with pytest.raises(LeaseLost):
        first.check()
    second = b.acquire(JOBS_LEASE, 30)
    assert second is not None and second.token > first.token
    assert b.acquire(RUN_LEASE, 30) is not None  # leases are independent of each other


def test_a_fenced_write_is_refused_once_the_lease_is_gone_and_an_unfenced_one_is_not(make):
    a, b = make("node-a"), make("node-b")
    lease = a.acquire(JOBS_LEASE, 30)
    a.put("checkpoint", {"offset": 1}, lease)
    assert b.get("checkpoint") == {"offset": 1}
    lease.release()
    with pytest.raises(LeaseLost):
        a.put("checkpoint", {"offset": 2}, lease)
    assert b.get("checkpoint") == {"offset": 1}
    b.put("note", ["any", 1, None])  # not fenced: always written
    assert a.get("note") == ["any", 1, None] and a.get("missing") is None


def test_heartbeats_keep_one_row_per_node_newest_first(make):
    a, b = make("node-a"), make("node-b")
    a.heartbeat("collector", {"ingest_events_per_sec": 12.5, "spool_segments": 3})
    time.sleep(0.02)
    b.heartbeat("jobs", {"jobs_active": True})
    time.sleep(0.02)
    a.heartbeat("collector", {"ingest_events_per_sec": 20.0, "spool_segments": 1})
    nodes = b.nodes()
    assert [n["node"] for n in nodes] == ["node-a", "node-b"]
    assert nodes[0]["role"] == "collector" and nodes[0]["info"] == {"ingest_events_per_sec": 20.0, "spool_segments": 1}
    assert nodes[1]["info"] == {"jobs_active": True}
    assert nodes[0]["seen_ms"] > nodes[1]["seen_ms"] and 0 <= nodes[0]["age_ms"] < 10_000
    time.sleep(0.3)
    assert b.nodes()[1]["age_ms"] >= 300  # the age grows between heartbeats


def test_the_run_log_records_runs_with_their_node_and_is_shared(make):
    a, b = make("node-a"), make("node-b")
    runs_a, runs_b = a.run_log(keep_runs=3), b.run_log(keep_runs=3)
    lease = a.acquire(RUN_LEASE, 30)
    runs_a.start("r1", "interval", lease=lease)
    runs_a.update("r1", stage="convert", events=10, analyze={"tenants": [{"tenant": "demo"}]})
    [seen] = runs_b.runs()  # another node sees it
    assert (seen["node"], seen["token"], seen["status"], seen["stage"], seen["events"]) == (
        "node-a", lease.token, "running", "convert", 10)
    runs_a.finish("r1", "ok", stage=None)
    done = runs_b.get("r1")
    assert done["status"] == "ok" and done["analyze"] == {"tenants": [{"tenant": "demo"}]} and done["seconds"] >= 0
    with pytest.raises(ValueError, match="no field 'bogus'"):
        runs_a.update("r1", bogus=1)
    with pytest.raises(KeyError):
        runs_b.get("nope")
    for i in range(2, 6):  # only keep_runs runs are kept
        time.sleep(0.002)
        runs_a.start(f"r{i}", "manual", ["demo"], lease=lease)
        runs_a.finish(f"r{i}", "ok")
    assert [r["run_id"] for r in runs_b.runs(10)] == ["r5", "r4", "r3"]
    assert runs_b.get("r5")["tenants"] == ["demo"]
    runs_b.set("next_run_at", 1234)
    assert runs_a.state()["next_run_at"] == 1234


def test_a_run_of_an_earlier_lease_is_marked_interrupted_and_stays_so(make):
    a, b = make("node-a"), make("node-b")
    old = a.acquire(RUN_LEASE, 30)
    runs_a, runs_b = a.run_log(), b.run_log()
    runs_a.start("old", "interval", lease=old)
    old.release()  # its node stopped (on PostgreSQL: or its lease expired; see the expiry test)
    new = b.acquire(RUN_LEASE, 30)
    runs_b.start("new", "interval", lease=new)
    assert runs_b.interrupt_stale() == 1
    assert runs_b.get("new")["status"] == "running"  # the live lease's run is left alone
    gone = runs_b.get("old")
    assert gone["status"] == "interrupted" and gone["finished_at"] is not None and gone["error"]
    runs_a.finish("old", "ok")  # the old node's late word changes nothing
    assert runs_b.get("old")["status"] == "interrupted"


def test_run_requests_from_any_node_make_one_run_of_their_tenants(make):
    a, b = make("collector-1"), make("jobs-1")
    ask, take = a.run_log(), b.run_log()
    assert not take.requested() and take.take_request() is None
    ask.request("requested (demo)", tenant="demo")
    ask.request("requested (demo)", tenant="demo")
    assert take.requested() and take.requested("demo") and not take.requested("other")
    assert take.take_request() == ("requested (demo)", ["demo"])
    assert not take.requested()
    ask.request("requested (other)", tenant="other")
    ask.request("requested (server admin)")
    assert take.requested("demo")  # a run of every tenant covers demo
    who, tenants = take.take_request()
    assert sorted(who.split(", ")) == ["requested (other)", "requested (server admin)"] and tenants is None


def test_requests_are_taken_once_when_two_nodes_race(make):
    a, b = make("jobs-1"), make("jobs-2")
    a.run_log().request("requested (demo)", tenant="demo")
    got = []
    barrier = threading.Barrier(2)

    def take(c):
        barrier.wait()
        got.append(c.run_log().take_request())

    threads = [threading.Thread(target=take, args=(c,)) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got, key=str) == sorted([None, ("requested (demo)", ["demo"])], key=str)


def test_a_held_lease_is_renewed_in_the_background_until_released(make):
    a, b = make("node-a"), make("node-b")
    held = a.hold(JOBS_LEASE, 1.5)
    deadline = time.monotonic() + 3.5  # more than twice the ttl
    while time.monotonic() < deadline:
        assert b.acquire(JOBS_LEASE, 1.5) is None
        held.check()
        time.sleep(0.2)
    held.release()
    assert b.acquire(JOBS_LEASE, 1.5) is not None


# -- PostgreSQL: expiry on the server's clock -----------------------------------------------------


def test_an_expired_lease_passes_on_and_its_holder_can_neither_renew_check_nor_write(pg):
    a, b = pg("node-a"), pg("node-b")
    lease = a.acquire(JOBS_LEASE, 1.0)
    a.put("checkpoint", 1, lease)
    time.sleep(1.2)  # the holder is paused: no renewal
    assert b.holder(JOBS_LEASE) is None  # expired: nobody holds it
    taken = b.acquire(JOBS_LEASE, 30)
    assert taken is not None and taken.token == lease.token + 1
    with pytest.raises(LeaseLost):
        lease.check()
    assert not lease.renew()
    with pytest.raises(LeaseLost):
        a.put("checkpoint", 2, lease)
    b.put("checkpoint", 3, taken)
    assert a.get("checkpoint") == 3


def test_check_refuses_before_expiry_when_less_than_a_third_of_the_ttl_is_left(pg):
    a, b = pg("node-a"), pg("node-b")
    lease = a.acquire(JOBS_LEASE, 3.0)
    lease.check()
    time.sleep(2.2)  # not renewed: 0.8 s left, less than the 1 s margin a commit may take
    with pytest.raises(LeaseLost, match="not renewed in time|less than"):
        lease.check()
    assert b.holder(JOBS_LEASE)["holder"] == "node-a"  # still held: check() is the cautious side
    assert lease.renew()  # renewed in time after all: fine again
    lease.check()


def test_expiry_is_the_servers_clock_not_the_nodes(pg):
    import psycopg

    a, b = pg("node-a"), pg("node-b")
    lease = a.acquire(JOBS_LEASE, 30)
    # what a node reads as expiry is the server's: within a second of the server's now() + ttl
    with psycopg.connect(**a.db.params) as c:
        server_now_ms = c.execute("select (extract(epoch from clock_timestamp()) * 1000)::bigint").fetchone()[0]
    assert abs(b.holder(JOBS_LEASE)["expires_ms"] - (server_now_ms + 30_000)) < 1_000
    lease.release()


def test_one_winner_when_many_nodes_race_for_a_free_lease(pg):
    nodes = [pg(f"node-{i}") for i in range(8)]
    barrier = threading.Barrier(len(nodes))
    won = []

    def race(c):
        barrier.wait()
        lease = c.acquire(JOBS_LEASE, 30)
        if lease is not None:
            won.append(lease)

    threads = [threading.Thread(target=race, args=(c,)) for c in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and won[0].token == 1


def test_a_write_under_an_older_token_never_replaces_a_newer_ones(pg):
    a, b = pg("node-a"), pg("node-b")
    old = a.acquire(JOBS_LEASE, 0.5)
    time.sleep(0.7)
    new = b.acquire(JOBS_LEASE, 30)
    b.put("checkpoint", "new", new)
    new.release()
    again = a.acquire(JOBS_LEASE, 30)  # a takes the lease again: a third token
    assert again.token == new.token + 1
    with pytest.raises(LeaseLost):
        a.put("checkpoint", "old", old)  # the old handle's token is dead, even though its node holds a newer one
    a.put("checkpoint", "newest", again)
    assert b.get("checkpoint") == "newest"


def test_run_now_asked_many_times_while_no_jobs_node_runs_stays_one_request(pg):
    ask = pg("collector-1").run_log()
    for _ in range(500):
        ask.request("requested (demo)", tenant="demo")
        ask.request("requested (server admin)")
    pending = ask.db.run(lambda c: c.execute("select count(*) from coord_run_requests").fetchone()[0])
    assert pending == 2
    who, tenants = pg("jobs-1").run_log().take_request()
    assert sorted(who.split(", ")) == ["requested (demo)", "requested (server admin)"] and tenants is None


# -- local: a lease ends with its holder's process ----------------------------------------------


def test_a_local_lease_of_a_killed_process_passes_on_without_waiting(tmp_path):
    run = tmp_path / "run"
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from beaconlake.backends.coordination.local import LocalCoordination
        lease = LocalCoordination(Path({str(run)!r}), "node-a").acquire("jobs", 30)
        print(lease.token, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        token = int(proc.stdout.readline())
        b = LocalCoordination(run, "node-b")
        assert b.acquire(JOBS_LEASE, 30) is None and b.holder(JOBS_LEASE)["holder"] == "node-a"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert b.holder(JOBS_LEASE) is None  # the row says node-a, but its flock died with it
        lease = b.acquire(JOBS_LEASE, 30)
        assert lease is not None and lease.token == token + 1
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_the_local_run_log_keeps_its_old_file_and_adds_the_new_columns(tmp_path):
    import sqlite3

    run = tmp_path / "run"
    run.mkdir()
    with sqlite3.connect(run / "schedule.db") as db:  # a run log from before nodes and tokens
        db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, trigger TEXT NOT NULL, started_at INTEGER NOT NULL, "
                   "finished_at INTEGER, status TEXT NOT NULL, stage TEXT, events INTEGER, new_files INTEGER, "
                   "analyze TEXT, error TEXT)")
        db.execute("INSERT INTO runs (run_id, trigger, started_at, status) VALUES ('old', 'interval', 1, 'running')")
    runs = LocalCoordination(run, "node-a").run_log()
    [old] = runs.runs()
    assert old["node"] is None and old["token"] is None
    assert runs.interrupt_stale() == 1 and runs.get("old")["status"] == "interrupted"
    assert Path(run / "schedule.db").exists()
