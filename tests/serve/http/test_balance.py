"""Workers of one socket share its connections: the shared table and its rules, then two real
workers under a burst of connections."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from rawhttp import connect, read_answers, request
from test_workers import wait_ready, workers

from beaconlake.serve.http import balance
from beaconlake.serve.http.balance import SLACK, Shares
from support import start_collector


@pytest.fixture
def table():
    fd = Shares.create(3)
    yield fd
    os.close(fd)


def test_a_worker_over_the_least_loaded_defers_within_the_slack(table):
    a, b, c = (Shares(table, slot, 3) for slot in range(3))
    for s, n in ((a, 10), (b, 4), (c, 7)):
        s.publish(n)
    assert a.defer(10) is True  # 10 > 4 + SLACK
    assert b.defer(4) is False
    assert c.defer(4 + SLACK) is False and c.defer(7) is True


def test_deferring_gives_up_after_max_defer_secs(table):
    a, b = Shares(table, 0, 3), Shares(table, 1, 3)
    Shares(table, 2, 3).publish(100)
    a.publish(10)
    b.publish(0)  # b looks idle but never accepts (stuck)
    deadline = time.monotonic() + 2
    while a.defer(10) and time.monotonic() < deadline:
        time.sleep(balance.DEFER_SECS)
    assert time.monotonic() < deadline, "a worker waited for ever on a stuck one"


def test_a_dead_workers_slot_never_holds_the_others_back(table):
    a = Shares(table, 0, 3)
    assert a.defer(1000) is False  # the others never started: their slots read full
    Shares(table, 1, 3).publish(0)
    assert a.defer(1000) is True
    balance.mark_dead(table, 1)
    assert a.defer(1000) is False


@pytest.mark.slow
def test_a_burst_of_connections_is_spread_over_the_workers(tmp_path):
    c = start_collector(tmp_path, args=["--workers", "2"])
    try:
        wait_ready(c, 2)
        pids = workers(c)
        socks = [connect(c.port) for _ in range(60)]
        for s in socks:  # each served once: every one of them is accepted by now
            s.sendall(request("GET", "/healthz"))
            assert read_answers(s, 1)[0].status == 200
        held = [sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd).startswith("socket:"))
                for pid in pids]
        assert abs(held[0] - held[1]) <= SLACK + 2, held
        for s in socks:
            s.close()
    finally:
        c.stop()
