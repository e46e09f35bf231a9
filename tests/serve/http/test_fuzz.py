"""Hypothesis over raw request bytes against a real ``beaconlake up``: whatever arrives, however
it is split across writes, the server answers with well-formed HTTP or closes, within its
deadlines; its worker never dies; and the next connection is served."""

from __future__ import annotations

import contextlib
import re
import socket
import time

import httptools
import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rawhttp import STATUS_LINE, connect, read_until_closed
from test_workers import workers

from support import start_collector

pytestmark = pytest.mark.slow

SHORT = {"header_read_timeout_secs": 1.0, "keepalive_idle_secs": 0.5, "body_read_timeout_secs": 1.0,
         "drain_timeout_secs": 1.0, "max_header_bytes": 4096}
WRITE_KEY = "wk_fuzzfuzzfuzzfuzzfuzz"


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    c = start_collector(tmp_path_factory.mktemp("fuzz"), config_overrides={
        "server": SHORT, "collector": {"max_body_bytes": 2048}, "tenant": {"write_key": WRITE_KEY}})
    c.worker_pids = workers(c)
    yield c
    c.stop()


token = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~",
                min_size=1, max_size=12)


# Each request is plausible except in at most two aspects, so most reach the routes and every
# rule still gets broken: the odd values of an aspect are used only when it is drawn as broken.
ASPECTS = ("method", "target", "version", "line_end", "header_name", "header_value", "framing", "stray_bytes")
header_name = st.sampled_from(["Content-Type", "Connection", "Expect", "Content-Encoding", "Origin",
                               "X-Beaconlake-Key", "Cookie", "Upgrade", "User-Agent", "Accept-Encoding",
                               "X-Forwarded-For", "Host"])
odd_header_name = st.one_of(token, st.text(max_size=8), st.sampled_from(["Content-Length", "Transfer-Encoding"]))
header_value = st.one_of(
    st.sampled_from(["text/plain", "application/json", "close", "keep-alive", "100-continue", "gzip", "chunked",
                     "websocket", "*", "https://shop.example", WRITE_KEY, "0", ""]),
    st.integers(min_value=0, max_value=5000).map(str), token)
odd_header_value = st.one_of(st.text(max_size=40), st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
                             st.sampled_from(["-1", "99999999999999999999", "1, 2", "chunked, gzip"]))
target = st.sampled_from(["/healthz", f"/v1/events?k={WRITE_KEY}", f"/v1/events?k={WRITE_KEY}", "/v1/events", "/",
                          "/metrics", "/beaconlake.js", "/v1/config?k=" + WRITE_KEY, "http://example/healthz",
                          "/%zz", "/a?b=%ff&c", "/v1/stats"])
odd_target = st.one_of(st.text(max_size=30), st.sampled_from(["*", "", "//", "a:1", "/\x7f"]))
method = st.sampled_from(["POST", "GET", "POST", "HEAD", "PUT", "OPTIONS", "DELETE", "PATCH"])
odd_method = st.one_of(token, st.text(max_size=6), st.sampled_from(["CONNECT", "PRI", "get"]))
version = st.sampled_from(["HTTP/1.1", "HTTP/1.0"])
odd_version = st.sampled_from(["HTTP/2.0", "HTTP/1.1x", "", "http/1.1", "HTTP/1.9", "HTTP/0.9"])
odd_line_end = st.sampled_from(["\n", "\r", "", "\r\r\n"])
payload = st.one_of(
    st.just(b'{"sent_at": 1, "events": [{"level": "mid", "name": "x", "anonymous_id": "f"}]}'),
    st.binary(max_size=3000),
    st.just(b"x" * 5000),  # over the 2 KiB body limit
)


@st.composite
def requests(draw) -> bytes:
    if draw(st.integers(0, 19)) == 19:
        return draw(st.binary(min_size=1, max_size=600))  # plain garbage
    broken = draw(st.sets(st.sampled_from(ASPECTS), max_size=2))

    def part(aspect: str, plausible: st.SearchStrategy, odd: st.SearchStrategy):
        return draw(odd if aspect in broken and draw(st.booleans()) else plausible)

    def end() -> str:
        return part("line_end", st.just("\r\n"), odd_line_end)

    lines = [f"{part('method', method, odd_method)} {part('target', target, odd_target)} "
             f"{part('version', version, odd_version)}{end()}"]
    if "header_name" not in broken or draw(st.booleans()):
        lines.append(f"Host: fuzz{end()}")
    for _ in range(draw(st.integers(0, 5))):
        lines.append(f"{part('header_name', header_name, odd_header_name)}: "
                     f"{part('header_value', header_value, odd_header_value)}{end()}")
    body = draw(payload)
    framing = draw(st.sampled_from(["length", "chunked", "none"]))
    if "framing" in broken:
        framing = draw(st.sampled_from(["short", "long", "bad-chunks", "both"]))
    if framing in ("length", "short", "long", "both"):
        declared = len(body) + {"short": -1, "long": 7}.get(framing, 0)
        lines.append(f"Content-Length: {max(declared, 0)}\r\n")
    if framing in ("chunked", "bad-chunks", "both"):
        lines.append("Transfer-Encoding: chunked\r\n")
        cut = len(body) // 2
        good = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:cut], body[cut:]) if p) + b"0\r\n\r\n"
        body = b"zz\r\n" + body if framing == "bad-chunks" else good
    lines.append(end())
    wire = "".join(lines).encode("latin-1", errors="replace") + body
    if "stray_bytes" in broken:
        at = draw(st.integers(0, len(wire)))
        wire = wire[:at] + draw(st.binary(min_size=1, max_size=8)) + wire[at:]
    if draw(st.booleans()):  # a well-formed request pipelined behind it
        wire += b"GET /healthz HTTP/1.1\r\nHost: f\r\n\r\n"
    return wire


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        if p > last:
            pieces.append(data[last:p])
            last = p
    return pieces


def well_formed(got: bytes) -> None:
    """Every answer parses as HTTP/1.1 (the answer to a HEAD has no body, so only its status line)."""
    assert STATUS_LINE.match(got), got[:200]

    class Sink:
        pass

    parser = httptools.HttpResponseParser(Sink())
    if b"content-length" in got.lower() and got.count(b"HTTP/1.1 ") == 1:
        parser.feed_data(got)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=requests(), cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=6),
       half_close=st.sampled_from([True, True, True, False]))
def test_any_bytes_get_a_well_formed_answer_or_a_close_and_never_a_hang(collector, data, cuts, half_close):
    sock = connect(collector.port)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for piece in split(data, cuts):
            sock.sendall(piece)
            time.sleep(0.002)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
    # the server's longest wait is its header/body timeout plus the drain: 2 s here
    got, closed_after = read_until_closed(sock, 6.0)
    sock.close()
    assert closed_after is not None, f"the connection is still open 6 s later; got {got[:200]!r}"
    reason = re.search(rb'"reason":"(\w+)"', got)
    event(f"answer {got[9:12].decode(errors='replace') or 'none (closed)'} {reason.group(1).decode() if reason else ''}")
    if got:
        well_formed(got)
        assert not re.search(rb"HTTP/1.1 5\d\d", got) or b"503" in got, got[:300]  # no 500: nothing failed
    assert httpx.get(collector.url + "/healthz", timeout=2.0).status_code == 200
    assert workers(collector) == collector.worker_pids, "a worker died"
