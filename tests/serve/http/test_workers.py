"""The supervisor against faults: a worker killed with SIGKILL is replaced while the others (and
the shared socket's backlog) keep the service answering; SIGTERM lets requests in flight finish."""

from __future__ import annotations

import json
import os
import resource
import signal
import time
from pathlib import Path

import httpx
import pytest
from rawhttp import connect, read_answers, read_until_closed, request

from support import read_lake, start_collector

pytestmark = pytest.mark.slow


def workers(collector) -> list[int]:
    pid = collector.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    out = []
    for child in children:
        try:
            if b"beaconlake.serve.http.worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(int(child))
        except OSError:
            continue
    return sorted(out)


def wait_workers(collector, count: int, other_than: set[int], timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = workers(collector)
        if len(pids) == count and not set(pids) & other_than:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"expected {count} new workers, have {workers(collector)}")


def wait_ready(collector, count: int, timeout: float = 30.0) -> None:
    """Wait until ``count`` workers have said they are ready (the supervisor logs each one)."""
    deadline = time.monotonic() + timeout
    while collector.log_path.read_text().count(" ready\"") < count:
        assert time.monotonic() < deadline, collector.log_path.read_text()
        time.sleep(0.1)


def batch(anonymous_id: str) -> bytes:
    return json.dumps({"sent_at": int(time.time() * 1000),
                       "events": [{"level": "mid", "name": "page_view", "anonymous_id": anonymous_id}]}).encode()


def post(c, body: bytes, timeout: float = 5.0) -> httpx.Response:
    return httpx.post(f"{c.url}/v1/events?k={c.write_key}", content=body, headers={"content-type": "text/plain"},
                      timeout=timeout)


def test_a_killed_worker_is_replaced_and_the_service_keeps_answering(tmp_path):
    c = start_collector(tmp_path, args=["--workers", "2"])
    try:
        wait_ready(c, 2)
        before = workers(c)
        assert len(before) == 2
        os.kill(before[0], signal.SIGKILL)
        answered = 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:  # a new connection each time: none is tied to the dead worker
            assert httpx.get(c.url + "/healthz", timeout=2.0).status_code == 200
            assert post(c, batch("after-kill")).status_code == 200
            answered += 1
        assert answered >= 3  # every request made while the worker was gone and coming back got its 200
        after = wait_workers(c, 2, {before[0]})
        assert before[1] in after
        assert "was killed by SIGKILL; starting a new one" in c.log_path.read_text()
    finally:
        c.stop()


def test_processes_that_cannot_be_started_for_a_while_are_started_once_they_can(tmp_path):
    """Out of descriptors (or processes, or memory) when a worker and the deliverer must be
    replaced: ``up`` says so and tries again later, and the other worker serves meanwhile. Before,
    the OSError ended the supervisor's loop, and with it every worker (the server was gone for
    good), and the deliverer's watch thread (delivery was gone for good)."""
    from faults.fault_procs import role_pids

    c = start_collector(tmp_path, args=["--workers", "2"])
    try:
        wait_ready(c, 2)
        before = workers(c)
        up = c.proc.pid
        [deliverer] = role_pids(up, "bl-deliver")
        limits = resource.prlimit(up, resource.RLIMIT_NOFILE)
        resource.prlimit(up, resource.RLIMIT_NOFILE, (3, limits[1]))  # no new descriptor for the supervisor
        try:
            os.kill(before[0], signal.SIGKILL)
            os.kill(deliverer, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while not all(said in c.log_path.read_text() for said in
                          ("cannot start a server worker", "cannot start the lake delivery process")):
                assert time.monotonic() < deadline and c.proc.poll() is None, c.log_path.read_text()[-3000:]
                time.sleep(0.1)
            assert post(c, batch("one-worker")).status_code == 200
            assert c.proc.poll() is None
        finally:
            resource.prlimit(up, resource.RLIMIT_NOFILE, limits)
        assert before[1] in wait_workers(c, 2, {before[0]}, timeout=30)
        wait_ready(c, 3)
        assert post(c, batch("two-workers")).status_code == 200
        deadline = time.monotonic() + 30
        while not [p for p in role_pids(up, "bl-deliver") if p != deliverer]:
            assert time.monotonic() < deadline, "the deliverer was not started again"
            time.sleep(0.1)
    finally:
        c.stop()
    assert {"one-worker", "two-workers"} <= {row["anonymous_id"] for row in read_lake(c.data_dir)}


def test_all_workers_killed_requests_wait_in_the_backlog_and_are_served(tmp_path):
    c = start_collector(tmp_path, args=["--workers", "2"])
    try:
        wait_ready(c, 2)
        before = workers(c)
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        r = post(c, batch("no-worker"), timeout=30.0)  # connects while no worker is alive
        assert r.status_code == 200, r.text
        assert time.monotonic() - t0 < 20
        wait_workers(c, 2, set(before))
        metrics = httpx.get(c.url + "/metrics").text
        assert "beaconlake_http_worker_restarts_total 2" in metrics
    finally:
        c.stop()
    assert "no-worker" in {row["anonymous_id"] for row in read_lake(c.data_dir)}


def test_sigterm_finishes_requests_in_flight_then_stops(tmp_path):
    c = start_collector(tmp_path, args=["--workers", "1"], config_overrides={"server": {"body_read_timeout_secs": 30.0}})
    try:
        idle = connect(c.port)
        idle.sendall(request("GET", "/healthz"))
        assert read_answers(idle, 1)[0].status == 200
        body = batch("in-flight")
        busy = connect(c.port)
        busy.sendall(request("POST", f"/v1/events?k={c.write_key}", headers={
            "content-type": "text/plain", "content-length": str(len(body))}) + body[:10])
        time.sleep(0.3)
        c.proc.send_signal(signal.SIGTERM)
        # the idle keep-alive connection is closed at once; the one mid-request is not
        assert read_until_closed(idle, 3)[1] is not None
        time.sleep(0.5)
        busy.sendall(body[10:])
        [answer] = read_answers(busy, 1)
        assert answer.status == 200 and answer.headers["connection"] == "close"
        assert c.proc.wait(30) == 0
    finally:
        c.stop()
    assert "in-flight" in {row["anonymous_id"] for row in read_lake(c.data_dir)}


def test_the_open_files_soft_limit_is_raised_to_the_hard_limit(tmp_path):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 1024:
        pytest.skip(f"the hard open-files limit ({hard}) leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # `up` inherits the low soft limit
    try:
        c = start_collector(tmp_path)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        [worker] = workers(c)
        line = next(x for x in Path(f"/proc/{worker}/limits").read_text().splitlines() if x.startswith("Max open files"))
        assert line.split()[3:5] == [str(hard), str(hard)], line
    finally:
        c.stop()
