"""Redis (the counters) and PostgreSQL (the high-level index and the profile store) hung, killed
and started again under load, as a stuck server, the OOM killer or a failover does.

Neither is on the path of an acknowledgement: ingest never fails because of them (no 5xx, and
every acknowledged event is in the lake exactly once), their failures are counted on
``/metrics``, and once they are back the statistics, the high-level index, the read API and
the profile store work again without restarting anything. Lake delivery goes on while
PostgreSQL is hung or down, even through a restart of the deliverer meanwhile.
"""

from __future__ import annotations

import collections
import os
import signal
import time
import tomllib
import uuid

import httpx
import pytest
from fault_checks import (
    SERVER_ADMIN_KEY,
    Metrics,
    assert_exactly_once,
    assert_recovered,
    lake_ids,
    pipeline,
    post_probe,
    request_run,
    wait_run,
    wait_until,
)
from fault_procs import kill9, wait_role
from fault_services import PostgresServer, RedisServer
from loadgen import Load

pytestmark = pytest.mark.slow


@pytest.fixture
def backends():
    redis, postgres = RedisServer(), PostgresServer()
    yield redis, postgres
    redis.close()
    postgres.close()


def read(url: str, key: str, path: str) -> httpx.Response:
    # a connection per call: with two workers, each one's own backend connections get asked
    return httpx.get(f"{url}{path}", headers={"authorization": f"Bearer {key}", "connection": "close"}, timeout=10)


def stats_count(url: str, key: str, name: str) -> int:
    r = read(url, key, f"/v1/stats?name={name}&by=hour")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return sum(row["count"] for row in r.json()["rows"])


def indexed(url: str, key: str, event_id: str) -> bool:
    r = read(url, key, "/v1/high-level?name=checkout_done")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return event_id in {e["event_id"] for e in r.json()["events"]}


def probe_stats(collector, read_key: str, name: str, n: int = 3) -> None:
    """``n`` events of a name no one else sends are counted, by whichever workers took them."""
    for _ in range(n):
        post_probe(collector.url, collector.write_key, name=name)
    wait_until(lambda: stats_count(collector.url, read_key, name) == n, 20, f"statistics counting {name}")


def probe_index(collector, read_key: str) -> str:
    """A browser-reported high-level event is indexed and readable from every worker."""
    event_id = post_probe(collector.url, collector.write_key, level="high", name="checkout_done")
    wait_until(lambda: all(indexed(collector.url, read_key, event_id) for _ in range(4)), 20,
               "the high-level event in the index")
    return event_id


def assert_unavailable(r: httpx.Response, store: str) -> None:
    """A read while its store is down: retry later, and why (not a 500, which says 'a bug')."""
    assert r.status_code == 503 and r.headers.get("retry-after"), (r.status_code, r.text[:300])
    assert r.json()["reason"] == "backend_unavailable" and store in r.json()["error"], r.text[:300]


def shopper(collector) -> None:
    """A visitor with a browser's user agent (the load is a bot to analyze: python-httpx), in the lake."""
    now = int(time.time() * 1000)
    events = [{"event_id": str(uuid.uuid4()), "level": "mid", "name": "page_view", "anonymous_id": "fault-shopper",
               "client_ts": now - 60_000 + i * 1000, "url": f"https://shop.example/p/{i}"} for i in range(5)]
    r = httpx.post(f"{collector.url}/v1/events?k={collector.write_key}", json={"sent_at": now, "events": events},
                   headers={"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"})
    assert r.status_code == 200 and r.json()["accepted"] == 5, r.text
    ids = {e["event_id"] for e in events}
    wait_until(lambda: ids <= lake_ids(collector.data_dir).keys(), 20, "the shopper's events in the lake")


def test_redis_and_postgres_restarts_never_fail_ingest_and_are_recovered_from(up, backends):
    redis, postgres = backends
    collector = up(workers=2, counters={"type": "redis", "url": redis.url, "key_prefix": "fault"},
                   highlevel={"type": "postgres", "dsn": postgres.dsn, "timeout_secs": 2},
                   profiles={"type": "postgres", "dsn": postgres.dsn, "timeout_secs": 2})
    tenant = tomllib.loads(collector.config_path.read_text())["tenants"][0]
    read_key, admin_key = tenant["read_key"], tenant["admin_key"]
    load = Load(collector.url, collector.write_key, connections=6).start()
    try:
        load.wait_acked(500)
        probe_stats(collector, read_key, "before_restarts")
        probe_index(collector, read_key)
        assert read(collector.url, read_key, "/v1/profiles/nobody").status_code == 404  # the store is open

        # Redis hung (SIGSTOP: a stuck server, a black-holed network): ingest must not wait for it
        timeouts = load.statuses["ReadTimeout"]
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            load.wait_acked(1000, timeout=10)
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        assert load.statuses["ReadTimeout"] == timeouts, "requests waited for a hung Redis"
        probe_stats(collector, read_key, "after_redis_hung")

        # Redis: killed, its in-memory data gone, started again a second later
        failures = Metrics(collector.url)("beaconlake_destination_failures_total", destination="stats")
        redis.kill()
        load.wait_acked(300, timeout=15)  # acknowledged meanwhile
        time.sleep(1.0)
        assert_unavailable(read(collector.url, read_key, "/v1/stats?name=page_view"), "Redis")
        redis.start()
        assert Metrics(collector.url)("beaconlake_destination_failures_total", destination="stats") > failures
        probe_stats(collector, read_key, "after_redis")  # the workers' clients reconnected by themselves

        # PostgreSQL hung (every process of it stopped): lake delivery must not wait for it (before,
        # the deliverer's pass waited for ever on its high-level index), and reads answer 503
        postgres.freeze()
        try:
            probe = post_probe(collector.url, collector.write_key, level="high", name="checkout_done")
            wait_until(lambda: probe in lake_ids(collector.data_dir), 30, "lake delivery going on while PostgreSQL hangs")
            start = time.monotonic()
            assert_unavailable(read(collector.url, read_key, "/v1/high-level?name=checkout_done"), "PostgreSQL")
            assert time.monotonic() - start < 8  # highlevel.timeout_secs (2), or a connect_timeout (3)
        finally:
            postgres.thaw()
        probe_index(collector, read_key)

        # PostgreSQL: crashed; while it is down the deliverer dies too (and is restarted)
        realtime_failures = Metrics(collector.url)("beaconlake_realtime_failures_total")
        postgres.crash()
        probe = post_probe(collector.url, collector.write_key, level="high", name="checkout_done")
        [deliverer] = wait_role(collector.proc.pid, "bl-deliver")
        kill9(deliverer)
        wait_role(collector.proc.pid, "bl-deliver", exclude={deliverer})
        load.wait_acked(300, timeout=15)
        # This wait found a worker whose housekeeping had died on a prune Redis refused (above): its
        # segment, the probe's, was never sealed on time (tests/ingest/collector/test_housekeeping.py)
        wait_until(lambda: probe in lake_ids(collector.data_dir), 20,
                   "lake delivery going on while PostgreSQL is down, after a restart of the deliverer")
        assert Metrics(collector.url)("beaconlake_realtime_failures_total") > realtime_failures
        for path in ("/v1/high-level?name=checkout_done", "/v1/profiles/fault-shopper"):
            assert_unavailable(read(collector.url, read_key, path), "PostgreSQL")
        postgres.start()
        probe_index(collector, read_key)  # the deliverer and both workers reconnected
        assert read(collector.url, read_key, "/v1/profiles/nobody").status_code == 404

        shopper(collector)
        runs = {r["run_id"] for r in pipeline(collector.url, SERVER_ADMIN_KEY)["runs"]}
        request_run(collector.url, admin_key)
        run = wait_run(collector.url, SERVER_ADMIN_KEY, runs)
        assert run["status"] == "ok", run
        r = read(collector.url, read_key, "/v1/profiles/fault-shopper")  # written to PostgreSQL, read back
        assert r.status_code == 200 and r.json()["person_id"] == "fault-shopper", (r.status_code, r.text[:300])
    finally:
        load.stop()
    assert not load.unexpected(), f"{load.unexpected()} {load.errors_5xx}"
    assert_recovered(collector.url, collector.write_key)
    collector.stop()
    found = lake_ids(collector.data_dir)
    ours = collections.Counter({i: n for i, n in found.items() if load.ledger.number(i) is not None})
    assert_exactly_once(load.ledger.acked_ids(), ours, ledger=load.ledger)


def test_a_postgres_restart_between_two_calls_costs_no_call(backends):
    """What the test above found, one call at a time: before, the first call after a restart
    failed and every later one too ('the connection is closed'); and a backend could not be
    made while the server was down."""
    from beaconlake.backends.highlevel.postgres import PostgresHighLevelIndex
    from beaconlake.backends.profiles.postgres import PostgresProfileStore

    from beaconlake.errors import BackendUnavailable

    _, postgres = backends
    postgres.crash()
    index, profiles = PostgresHighLevelIndex(postgres.dsn), PostgresProfileStore(postgres.dsn)  # the server is down
    with pytest.raises(BackendUnavailable, match="PostgreSQL at 127.0.0.1"):
        index.counts("t", None, None, None)  # fails at once, for the caller to count
    postgres.start()
    assert index.counts("t", None, None, None) == {} and profiles.count("t") == 0
    postgres.crash()
    postgres.start()
    assert index.counts("t", None, None, None) == {} and profiles.count("t") == 0
    index.close()
    profiles.close()


def test_a_hung_postgres_costs_a_call_its_timeout_not_for_ever(backends):
    """Before, a call to a server that had stopped answering waited for ever: the kernel of a hung
    server (or of a black-holed network's peer) still acknowledges what is sent."""
    from beaconlake.backends.highlevel.postgres import PostgresHighLevelIndex
    from beaconlake.backends.profiles.postgres import PostgresProfileStore

    from beaconlake.errors import BackendUnavailable

    _, postgres = backends
    index = PostgresHighLevelIndex(postgres.dsn, timeout_secs=1)
    profiles = PostgresProfileStore(postgres.dsn, timeout_secs=1)
    assert index.counts("t", None, None, None) == {} and profiles.count("t") == 0  # connected
    postgres.freeze()
    try:
        for call, setting in ((lambda: index.counts("t", None, None, None), "highlevel.timeout_secs"),
                              (lambda: profiles.count("t"), "profiles.timeout_secs")):
            start = time.monotonic()
            with pytest.raises(BackendUnavailable, match=rf"did not answer within 1 s \({setting}\)"):
                call()
            assert time.monotonic() - start < 3
        start = time.monotonic()  # no connection left: a new one waits for the DSN's connect_timeout (3 s)
        with pytest.raises(BackendUnavailable, match="cannot be reached"):
            index.counts("t", None, None, None)
        assert time.monotonic() - start < 5
    finally:
        postgres.thaw()
    assert index.counts("t", None, None, None) == {} and profiles.count("t") == 0  # back, with no one's help
    index.close()
    profiles.close()
