"""HTTP/1.1 framing against a real ``beaconlake up``: every refusal is readable, bodies arrive
however they are framed, pipelined answers come back in order."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import httpx
import pytest
from rawhttp import STATUS_LINE, connect, read_answers, read_until_closed, request

from support import start_collector

pytestmark = pytest.mark.slow

MB = 1024 * 1024


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    c = start_collector(tmp_path_factory.mktemp("framing"), args=["--workers", "2"])
    yield c
    c.stop()


def batch(n: int = 1, anonymous_id: str = "framing") -> bytes:
    events = [{"level": "mid", "name": "page_view", "anonymous_id": anonymous_id} for _ in range(n)]
    return json.dumps({"sent_at": int(time.time() * 1000), "events": events}).encode()


def events_path(c) -> str:
    return f"/v1/events?k={c.write_key}"


@pytest.mark.parametrize("size_mb", [2, 5, 10])
def test_urllib_reads_the_413_of_a_body_over_the_limit_never_a_reset(collector, size_mb):
    """urllib sends the whole body before it reads: without the drain it got a broken pipe."""
    body = b"x" * (size_mb * MB)
    for attempt in range(10):
        req = urllib.request.Request(collector.url + events_path(collector), data=body, method="POST",
                                     headers={"content-type": "text/plain"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(req, timeout=30)
        assert caught.value.code == 413, f"attempt {attempt}"
        answer = json.loads(caught.value.read())
        assert answer["reason"] == "too_large"
        assert f"body is {size_mb * MB} bytes, limit {MB}" in answer["error"]


def test_chunked_body_over_the_limit_is_413_then_closed(collector):
    sock = connect(collector.port)
    head = (f"POST {events_path(collector)} HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"x" * 65536
    sock.sendall(head)
    for _ in range(40):  # 2.5 MB in 64 KiB chunks
        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    sock.sendall(b"0\r\n\r\n")
    [answer] = read_answers(sock, 1)
    assert answer.status == 413 and answer.headers["connection"] == "close"
    assert json.loads(answer.body)["error"] == f"body is over {MB} bytes, limit {MB}"
    assert read_until_closed(sock, 5)[1] is not None


def test_chunked_body_is_accepted(collector):
    body = batch(3)
    sock = connect(collector.port)
    parts = [body[:10], body[10:25], body[25:]]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    sock.sendall(request("POST", events_path(collector), headers={"content-type": "text/plain",
                                                                  "transfer-encoding": "chunked"}) + wire)
    [answer] = read_answers(sock, 1)
    assert answer.status == 200, answer.body
    assert json.loads(answer.body) == {"accepted": 3, "rejected": []}


def test_http_10_post_without_content_length_is_411(collector):
    sock = connect(collector.port)
    sock.sendall(f"POST {events_path(collector)} HTTP/1.0\r\nContent-Type: text/plain\r\n\r\n".encode() + batch())
    sock.shutdown(socket.SHUT_WR)  # HTTP/1.0 style: the body ends where the connection does
    [answer] = read_answers(sock, 1)
    assert answer.status == 411
    assert json.loads(answer.body)["reason"] == "length_required"


def test_http_11_post_without_framing_is_411_and_readable(collector):
    sock = connect(collector.port)
    sock.sendall(f"POST {events_path(collector)} HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n\r\n".encode()
                 + batch())
    [answer] = read_answers(sock, 1)
    assert answer.status == 411 and answer.headers["connection"] == "close"


def test_http_10_with_content_length_is_served_and_closed(collector):
    sock = connect(collector.port)
    sock.sendall(request("POST", events_path(collector), batch(), {"content-type": "text/plain"}, version="1.0"))
    got, closed_after = read_until_closed(sock, 5)
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and closed_after is not None


def test_http_10_keep_alive_is_honoured(collector):
    sock = connect(collector.port)
    for _ in range(2):
        sock.sendall(request("GET", "/healthz", headers={"connection": "keep-alive"}, version="1.0"))
        [answer] = read_answers(sock, 1)
        assert answer.status == 200 and answer.headers["connection"] == "keep-alive"


def test_pipelined_requests_are_answered_in_order(collector):
    """A slow POST (fsync) first, then quick GETs: the answers still come back in order."""
    sock = connect(collector.port)
    wire = b"".join([
        request("POST", events_path(collector), batch(2), {"content-type": "text/plain"}),
        request("GET", "/healthz"),
        request("GET", "/nope-404"),
        request("POST", events_path(collector), b"{not json", {"content-type": "text/plain"}),
        request("GET", "/readyz"),
    ])
    sock.sendall(wire)
    answers = read_answers(sock, 5)
    assert [a.status for a in answers] == [200, 200, 404, 400, 200]
    assert json.loads(answers[0].body)["accepted"] == 2
    assert json.loads(answers[4].body)["status"] == "ready"


def test_expect_100_continue_only_when_the_body_is_wanted(collector):
    body = batch()
    sock = connect(collector.port)
    sock.sendall(request("POST", events_path(collector), headers={"content-type": "text/plain",
                                                                  "content-length": str(len(body)),
                                                                  "expect": "100-continue"}))
    sock.settimeout(5)
    assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(body)
    [answer] = read_answers(sock, 1)
    assert answer.status == 200
    # refused on its headers (declared size over the limit): no 100, the final answer at once
    sock = connect(collector.port)
    sock.sendall(request("POST", events_path(collector), headers={"content-type": "text/plain",
                                                                  "content-length": str(5 * MB),
                                                                  "expect": "100-continue"}))
    [answer] = read_answers(sock, 1)
    assert answer.status == 413


def test_unknown_expectation_is_417(collector):
    sock = connect(collector.port)
    sock.sendall(request("GET", "/healthz", headers={"expect": "coffee"}))
    [answer] = read_answers(sock, 1)
    assert answer.status == 417


def test_head_has_headers_and_no_body(collector):
    sock = connect(collector.port)
    sock.sendall(request("HEAD", "/beaconlake.js") + request("GET", "/healthz"))
    got = b""
    while got.count(b"HTTP/1.1 ") < 2 or not got.endswith(b'{"status":"ok"}'):
        data = sock.recv(65536)
        assert data, got
        got += data
    head, rest = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: " in head.lower()
    assert rest.startswith(b"HTTP/1.1 200 OK")  # nothing between the HEAD's headers and the next answer


def test_headers_over_the_limit_are_431(collector):
    sock = connect(collector.port)
    sock.sendall(request("GET", "/healthz", headers={"x-big": "a" * 20_000}))
    [answer] = read_answers(sock, 1)
    assert answer.status == 431 and "server.max_header_bytes" in json.loads(answer.body)["error"]


def test_endless_header_is_431_before_the_server_holds_it_all(collector):
    sock = connect(collector.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Endless: ")
    answers = []
    try:
        for _ in range(64):
            sock.sendall(b"a" * 4096)
            time.sleep(0.005)
    except (BrokenPipeError, ConnectionResetError):
        pass
    answers = read_answers(sock, 1)
    assert answers and answers[0].status == 431


def test_malformed_request_is_400_and_the_server_goes_on(collector):
    sock = connect(collector.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n")
    got, closed = read_until_closed(sock, 5)
    assert STATUS_LINE.match(got) and got.startswith(b"HTTP/1.1 400 ") and closed is not None
    assert httpx.get(collector.url + "/healthz").status_code == 200


def test_absolute_form_target_is_served(collector):
    sock = connect(collector.port)
    sock.sendall(request("GET", f"http://127.0.0.1:{collector.port}/healthz"))
    [answer] = read_answers(sock, 1)
    assert answer.status == 200


def test_side_routes_work_through_the_asgi_bridge(collector):
    with httpx.Client(base_url=collector.url) as client:
        js = client.get("/beaconlake.js", headers={"accept-encoding": "gzip"})
        assert js.status_code == 200 and js.headers["content-encoding"] == "gzip" and b"beaconlake" in js.content
        cfg = client.get("/v1/config", params={"k": collector.write_key})
        assert cfg.status_code == 200 and cfg.json()["tenant"] == "demo"
        assert client.get("/v1/profiles/someone").status_code == 401  # read key required
        dash = client.get("/")
        assert dash.status_code == 200 and "text/html" in dash.headers["content-type"]


def test_connection_close_is_honoured_and_nothing_after_it_is_answered(collector):
    sock = connect(collector.port)
    sock.sendall(request("GET", "/healthz", headers={"connection": "close"}) + request("GET", "/readyz"))
    got, closed_after = read_until_closed(sock, 5)
    assert closed_after is not None and got.count(b"HTTP/1.1 ") == 1 and b"connection: close" in got


def test_an_upgrade_request_is_served_as_plain_http_and_the_connection_goes_on(collector):
    sock = connect(collector.port)
    sock.sendall(request("GET", "/healthz", headers={"connection": "Upgrade", "upgrade": "websocket"})
                 + request("GET", "/readyz"))
    answers = read_answers(sock, 2)
    assert [a.status for a in answers] == [200, 200]
    sock = connect(collector.port)
    sock.sendall(request("POST", "/healthz", b"abc", {"connection": "Upgrade", "upgrade": "h2c"}))
    [answer] = read_answers(sock, 1)
    assert answer.status == 400 and json.loads(answer.body)["reason"] == "upgrade"


def test_a_long_pipeline_is_answered_whole_and_in_order(collector):
    """Thousands of requests in one write: reads split them at arbitrary points, none is refused
    (a request whose headers straddle two reads once passed for headers over the limit)."""
    count = 20_000
    sock = connect(collector.port, timeout=30)
    sock.sendall(b"".join(request("GET", f"/healthz?n={i}") for i in range(count)))
    answers = read_answers(sock, count, timeout=60)
    assert len(answers) == count and {a.status for a in answers} == {200}


def test_an_early_answer_then_the_rest_of_the_body_and_a_pipelined_request_never_get_a_reset(collector):
    """A 415 goes out before the body is in; the rest of the body and a request pipelined behind
    it then arrive in one write. Closing as soon as the body is drained would answer those bytes
    with a reset (found by test_fuzz): the server says it is done and lets the client close."""
    head = b"POST /v1/events HTTP/1.1\r\nHost: fuzz\r\nContent-Type: wk_fuzzfuzzfuzzfuzzfuzz\r\nContent-Length: 78\r\n\r\n"
    body = b'{"sent_at": 1, "events": [{"level": "mid", "name": "x", "anonymous_id": "f"}]}'
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", collector.port))  # blocking, as the fuzz test's client
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (head, body[:54], body[54:] + b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"):
            sock.sendall(piece)
            time.sleep(0.002)
        sock.shutdown(socket.SHUT_WR)  # raises ENOTCONN after a reset
        got, closed_after = read_until_closed(sock, 5.0)
        sock.close()
        assert got.startswith(b"HTTP/1.1 415 ") and closed_after is not None, got[:200]
