"""The worker's housekeeping (sealing its spool segment on time, the spool's pressure, the
realtime statistics' pruning and publishing) outlives whatever one of its steps raises, and a
server backend's step never holds the event loop.

Found by the fault suite: a prune that met Redis refusing connections raised out of the
housekeeping task and ended it, so that worker's open segment was sealed only at 64 MB, not
after ``spool.flush_interval_secs``: its acknowledged events stopped reaching the lake.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import body, event
from support import free_port

from beaconlake.ingest import spool

URL = "/v1/events?k=wk_testtesttesttesttest"
TEXT = {"content-type": "text/plain;charset=UTF-8"}


def failures(client, step: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("beaconlake_housekeeping_failures_total{") and f'step="{step}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (last := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.05)
    return last


def test_a_counters_server_refusing_connections_does_not_stop_sealing(make_client):
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: every call is refused
    client = make_client(spool={"min_free_disk_bytes": 0, "flush_interval_secs": 0.5},
                         counters={"type": "redis", "url": down})
    realtime = client.app.collector.companions[0]
    realtime.flush_secs = 0.1  # prune every tick, not every 5 s

    wait_for(lambda: failures(client, "realtime") >= 3, 10, "the failing prune counted")
    root = client.settings.spool_path
    for round_ in range(3):  # the loop goes on after each failure, not only the first
        before = set(spool.sealed_segments(root))
        r = client.post(URL, content=body(event(name=f"after_failure_{round_}")), headers=TEXT)
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
        wait_for(lambda: set(spool.sealed_segments(root)) - before, 5, "the segment sealed on time")
    assert failures(client, "realtime") >= 6


def test_a_hung_counters_server_does_not_hold_the_event_loop(make_client):
    from faults.fault_services import RedisServer

    redis = RedisServer()
    try:
        client = make_client(counters={"type": "redis", "url": redis.url})
        realtime = client.app.collector.companions[0]
        assert client.post(URL, content=body(event()), headers=TEXT).status_code == 200
        os.kill(redis.proc.pid, signal.SIGSTOP)  # a stuck server: connections open, nothing answers
        try:
            realtime.flush_secs = 0.1
            slowest, deadline = 0.0, time.monotonic() + 5
            while time.monotonic() < deadline:
                start = time.monotonic()
                r = client.get("/healthz")
                slowest = max(slowest, time.monotonic() - start)
                assert r.status_code == 200
                time.sleep(0.02)
            # the prune waits out the socket timeout (2 s) in its thread, not on the loop
            assert slowest < 1.0, f"a request waited {slowest:.2f}s behind the hung counters server"
            wait_for(lambda: failures(client, "realtime") >= 1, 10, "the timed-out prune counted")
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        before = failures(client, "realtime")
        time.sleep(1.0)
        assert failures(client, "realtime") == before, "pruning did not recover once Redis answered again"
    finally:
        redis.close()


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), RuntimeError("a bug"), KeyError("x")])
def test_every_step_goes_on_whatever_another_raises(make_client, monkeypatch, error):
    client = make_client(spool={"min_free_disk_bytes": 0, "flush_interval_secs": 0.3})
    collector = client.app.collector

    def broken() -> None:
        raise error

    monkeypatch.setattr(collector, "_check_pressure", broken)
    monkeypatch.setattr(collector.companions[0], "housekeeping", broken)
    root = client.settings.spool_path
    for _ in range(2):
        before = set(spool.sealed_segments(root))
        assert client.post(URL, content=body(event()), headers=TEXT).status_code == 200
        wait_for(lambda: set(spool.sealed_segments(root)) - before, 5, "the segment sealed on time")
    assert failures(client, "pressure") >= 2 and failures(client, "realtime") >= 2
