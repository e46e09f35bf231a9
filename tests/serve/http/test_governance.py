"""Connection governance against a real ``beaconlake up``: connections that hold a slot without
sending a request are closed on their deadlines or shed, so they never lock clients out."""

from __future__ import annotations

import contextlib
import json
import re
import resource
import socket
import time
from pathlib import Path

import httpx
import pytest
from rawhttp import connect, read_answers, read_until_closed, request

from support import start_collector

from beaconlake.serve.http.server import SHED_GRACE_SECS

pytestmark = pytest.mark.slow

SHORT = {"header_read_timeout_secs": 1.0, "keepalive_idle_secs": 0.5, "body_read_timeout_secs": 1.0,
         "drain_timeout_secs": 1.0, "send_timeout_secs": 1.0}


def batch(n: int = 1) -> bytes:
    events = [{"level": "mid", "name": "page_view", "anonymous_id": "governance"} for _ in range(n)]
    return json.dumps({"sent_at": int(time.time() * 1000), "events": events}).encode()


def metric(c, name: str, **labels: str) -> float:
    text = httpx.get(c.url + "/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" ([0-9.e+]+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def wait_metric(c, name: str, at_least: float, timeout: float = 5.0, **labels: str) -> float:
    """Worker counters reach /metrics through snapshots written about once a second."""
    deadline = time.monotonic() + timeout
    while (value := metric(c, name, **labels)) < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def post(c, body: bytes, timeout: float = 1.0) -> httpx.Response:
    return httpx.post(f"{c.url}/v1/events?k={c.write_key}", content=body, headers={"content-type": "text/plain"},
                      timeout=timeout)


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    c = start_collector(tmp_path_factory.mktemp("short"), config_overrides={"server": SHORT})
    yield c
    c.stop()


@pytest.fixture
def more_open_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 8000:
        pytest.skip(f"the hard open-files limit ({hard}) is too low for 3,000+ connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_idle(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    return socks


def test_thousands_of_idle_connections_do_not_take_the_collector_down(tmp_path, more_open_files):
    """granian stopped serving at 2,049 idle connections (its backpressure counted them)."""
    c = start_collector(tmp_path, args=["--workers", "2"])
    socks: list[socket.socket] = []
    try:
        socks = open_idle(c.port, 3200)
        time.sleep(0.5)  # let the workers accept them all
        t0 = time.monotonic()
        assert httpx.get(c.url + "/healthz", timeout=1.0).status_code == 200
        r = post(c, batch(3))
        assert r.status_code == 200 and r.json()["accepted"] == 3
        assert time.monotonic() - t0 < 2.0
        # they are all still open: nothing was shed below the cap
        assert metric(c, "beaconlake_http_connections_closed_total", reason="shed") == 0
    finally:
        for s in socks:
            s.close()
        c.stop()


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(short):
    sock = connect(short.port)
    got, closed_after = read_until_closed(sock, 6)
    assert got == b"" and closed_after is not None and 0.8 <= closed_after <= 3.0


def test_half_headers_get_408_and_are_closed(short):
    sock = connect(short.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
    got, closed_after = read_until_closed(sock, 6)
    assert closed_after is not None and 0.8 <= closed_after <= 3.0
    assert got.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"server.header_read_timeout_secs" in got


def test_trickled_headers_are_cut_at_the_deadline_however_active(short):
    """The deadline runs from the connection's start: a byte every 0.2 s does not extend it."""
    sock = connect(short.port)
    start = time.monotonic()
    line = b"X-Slow: " + b"a" * 100 + b"\r\n"
    closed = False
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        for i in range(len(line) * 5):
            sock.sendall(line[i % len(line): i % len(line) + 1])
            time.sleep(0.05)
            if time.monotonic() - start > 6:
                break
    got, closed_after = read_until_closed(sock, 6)
    closed = closed_after is not None
    assert closed and time.monotonic() - start < 6
    assert got.startswith(b"HTTP/1.1 408 ")


def test_half_a_body_gets_408_and_is_closed(short):
    body = batch(2)
    sock = connect(short.port)
    sock.sendall(request("POST", f"/v1/events?k={short.write_key}", headers={
        "content-type": "text/plain", "content-length": str(len(body))}) + body[: len(body) // 2])
    got, closed_after = read_until_closed(sock, 6)
    assert closed_after is not None and 0.8 <= closed_after <= 3.0
    assert got.startswith(b"HTTP/1.1 408 ")
    answer = json.loads(got.split(b"\r\n\r\n", 1)[1])
    assert answer["reason"] == "timeout" and "server.body_read_timeout_secs" in answer["error"]


def test_an_idle_keep_alive_connection_is_closed_after_keepalive_idle(short):
    sock = connect(short.port)
    sock.sendall(request("GET", "/healthz"))
    [answer] = read_answers(sock, 1)
    assert answer.status == 200 and "connection" not in answer.headers
    got, closed_after = read_until_closed(sock, 6)
    assert got == b"" and closed_after is not None and closed_after <= 2.0


def tcp_queues(local_port: int, remote_port: int) -> tuple[int, int] | None:
    """(send queue, receive queue) in bytes of one end of a loopback connection."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if int(local, 16) == local_port and int(remote, 16) == remote_port:
            tx, rx = fields[4].split(":")
            return int(tx, 16), int(rx, 16)
    return None


def test_a_client_that_pipelines_without_reading_is_stopped_then_cut(short):
    """Reading stops while our answers pile up unread (the requests wait in the kernel, not in
    the server's memory); after send_timeout_secs the connection is dropped."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", short.port))
    client_port = sock.getsockname()[1]
    sock.settimeout(5)
    wire = request("GET", "/healthz") * 100_000  # 3.7 MB of requests, 10 MB of answers if all were read
    with contextlib.suppress(OSError):
        sock.sendall(wire)
    time.sleep(0.3)
    server, client = tcp_queues(short.port, client_port), tcp_queues(client_port, short.port)
    assert server is not None, "the server dropped the connection before its send timeout"
    # A server that kept reading would leave next to nothing of the 3.7 MB unread. The requests it
    # did not read wait in its receive queue and in our send queue; how the kernel splits them
    # depends on how far it grew each buffer (95 kB to 1.8 MB seen on the server's side), so the
    # claim is on their sum, and on a large backlog, not a size.
    unread = server[1] + client[0]
    assert unread > 256_000, f"the server kept reading requests whose answers nobody read: server {server}, client {client}"
    assert wait_metric(short, "beaconlake_http_connections_closed_total", 1, timeout=10, reason="send_timeout") >= 1
    sock.close()
    assert httpx.get(short.url + "/healthz", timeout=2.0).status_code == 200


def test_timeouts_are_counted_in_metrics(short):
    for reason in ("header_timeout", "body_timeout", "keepalive_idle"):
        assert wait_metric(short, "beaconlake_http_connections_closed_total", 1, reason=reason) >= 1, reason
    assert wait_metric(short, "beaconlake_http_refused_total", 1, code="408") >= 1


def test_a_slow_but_steady_client_within_the_deadlines_is_served(short):
    body = batch(1)
    sock = connect(short.port)
    head = request("POST", f"/v1/events?k={short.write_key}", headers={
        "content-type": "text/plain", "content-length": str(len(body))})
    for piece in (head[:20], head[20:], body[:30], body[30:]):
        sock.sendall(piece)
        time.sleep(0.15)
    [answer] = read_answers(sock, 1)
    assert answer.status == 200


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    c = start_collector(tmp_path_factory.mktemp("capped"), config_overrides={
        "server": {"max_connections_per_worker": 40, "header_read_timeout_secs": 30.0, "body_read_timeout_secs": 30.0}})
    yield c
    c.stop()


def test_at_the_cap_the_longest_idle_connections_are_shed(capped):
    """Once idle connections have waited ``SHED_GRACE_SECS``, newcomers shed the oldest; younger
    ones are spared (their client may be about to send), so a burst past the cap is refused."""
    older = open_idle(capped.port, 100)  # over both workers' caps (2 x 40), all within the grace
    socks = list(older)
    try:
        time.sleep(SHED_GRACE_SECS + 0.2)
        newer = open_idle(capped.port, 30)  # each sheds one of the older
        socks += newer
        for _ in range(5):
            assert httpx.get(capped.url + "/healthz", timeout=1.0).status_code == 200
            assert post(capped, batch()).status_code == 200
        for s in older[:10]:  # the first opened are the first shed
            assert read_until_closed(s, 2)[1] is not None
        for s in newer:
            assert read_until_closed(s, 0.05)[1] is None, "a connection within its grace was shed"
        still_open = sum(read_until_closed(s, 0.05)[1] is None for s in older)
        assert still_open <= 2 * 40 - 30, f"{still_open} of the older connections still open"
        # the requests' connections closed after their answers: only the first had to shed one
        assert wait_metric(capped, "beaconlake_http_connections_closed_total", 31, reason="shed") >= 31
    finally:
        for s in socks:
            s.close()


def test_at_the_cap_with_none_idle_a_new_connection_gets_503(capped):
    """Connections in the middle of a body are busy, not idle: they are not shed."""
    body = batch()
    busy = []
    try:
        for _ in range(40):
            s = connect(capped.port)
            s.sendall(request("POST", f"/v1/events?k={capped.write_key}", headers={
                "content-type": "text/plain", "content-length": str(len(body))}) + body[:5])
            busy.append(s)
        time.sleep(0.3)
        sock = connect(capped.port)
        got, closed_after = read_until_closed(sock, 3)
        assert got.startswith(b"HTTP/1.1 503 ") and b"retry-after: " in got and closed_after is not None
        assert b"server.max_connections_per_worker" in got
        for s in busy[:3]:  # the busy ones are intact and finish their requests
            s.sendall(body[5:])
            [answer] = read_answers(s, 1)
            assert answer.status == 200
    finally:
        for s in busy:
            s.close()
    time.sleep(0.3)
    assert httpx.get(capped.url + "/healthz", timeout=1.0).status_code == 200
