"""Shedding at the connection cap never resets a request: a connection whose request has reached
the kernel but not yet the event loop (it was busy, or accepted the new connection first) looks
idle, and closing it would make the kernel answer that request with a reset. The fault suite saw
exactly that: clients reset while newer connections shed theirs under a flood. Nor is a
connection opened or answered less than a grace ago: its client may be sending its request as
the server closes.

The server runs in this process, on its own thread and uvloop, so the test can hold one
connection's reading paused: its request then waits in the kernel, deterministically."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop
from rawhttp import connect, read_answers, read_until_closed, request

from beaconlake.serve.http import server as server_module
from beaconlake.serve.http.protocol import HttpProtocol
from beaconlake.serve.http.server import HttpServer, Limits


class Served:
    def __init__(self, server: HttpServer, loop: asyncio.AbstractEventLoop, port: int) -> None:
        self.server, self.loop, self.port = server, loop, port

    def call(self, fn: Any) -> Any:
        """Run ``fn`` on the server's loop, between two of its callbacks, and return its result."""
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    def conn_of(self, client: socket.socket) -> Any:
        """The server's side of ``client``, once it is accepted."""
        here = client.getsockname()
        deadline = time.monotonic() + 5
        while not (found := self.call(lambda: [c for c in self.server.conns
                                               if c.transport.get_extra_info("peername") == here])):
            assert time.monotonic() < deadline, "the connection was never accepted"
            time.sleep(0.01)
        return found[0]


def serve_in_thread(header_read_timeout_secs: float = 30) -> Served:
    sock = socket.create_server(("127.0.0.1", 0))
    ready = threading.Event()
    got: list[Served] = []

    async def upload(req: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        body = await req.read_body(1 << 20)
        return 200, [], b'{"size": %d}' % len(body)

    async def serve() -> None:
        limits = Limits(keepalive_idle_secs=30, header_read_timeout_secs=header_read_timeout_secs, body_read_timeout_secs=30,
                        max_header_bytes=16384, max_body_bytes=1 << 20, max_connections=2, max_drain_bytes=1 << 20,
                        drain_timeout_secs=2, send_timeout_secs=5, retry_after_secs=1, shutdown_timeout_secs=1)
        server = HttpServer({"/upload": upload}, None, limits)
        await server.start(sock)
        got.append(Served(server, asyncio.get_running_loop(), sock.getsockname()[1]))
        ready.set()
        while True:
            await asyncio.sleep(3600)

    threading.Thread(target=lambda: uvloop.run(serve()), daemon=True).start()
    assert ready.wait(10)
    return got[0]


@pytest.fixture
def served() -> Iterator[Served]:
    yield serve_in_thread()


def post(body: bytes) -> bytes:
    return request("POST", "/upload", body, headers={"content-type": "text/plain"})


def hold_busy(port: int) -> socket.socket:
    """A connection in the middle of a body: never shed."""
    busy = connect(port)
    busy.sendall(request("POST", "/upload", headers={"content-type": "text/plain", "content-length": "10"}) + b"12345")
    return busy


def finish_busy(busy: socket.socket) -> None:
    busy.sendall(b"67890")
    [answer] = read_answers(busy, 1)
    assert answer.status == 200 and answer.body == b'{"size": 10}'


def refused(port: int) -> bool:
    got, closed_after = read_until_closed(connect(port), 3)
    assert closed_after is not None, got
    return got.startswith(b"HTTP/1.1 503 ") and b"server.max_connections_per_worker" in got


def gives_way(port: int, victim: socket.socket) -> None:
    """A newcomer at the cap is served, and ``victim`` is the connection shed for it."""
    newcomer = connect(port)
    newcomer.sendall(post(b"hello"))
    [answer] = read_answers(newcomer, 1)
    assert answer.status == 200 and answer.body == b'{"size": 5}'
    got, closed_after = read_until_closed(victim, 3)
    assert got == b"" and closed_after is not None


def test_a_connection_whose_request_waits_unread_in_the_kernel_is_not_shed(served, monkeypatch):
    monkeypatch.setattr(server_module, "SHED_GRACE_SECS", 0.0)  # only the unread bytes protect it
    fresh = connect(served.port)
    busy = hold_busy(served.port)
    held = served.conn_of(fresh)
    served.call(held.transport.pause_reading)  # its request stays in the kernel, as in a busy turn
    fresh.sendall(post(b"first"))
    assert refused(served.port)  # at the cap (2), and `fresh` only looks idle: the newcomer waits
    served.call(held.transport.resume_reading)
    [answer] = read_answers(fresh, 1)
    assert answer.status == 200 and answer.body == b'{"size": 5}'
    finish_busy(busy)


def test_a_client_between_two_requests_is_spared_for_the_grace_then_shed(served, monkeypatch):
    monkeypatch.setattr(server_module, "SHED_GRACE_SECS", 0.5)
    keep = connect(served.port)
    keep.sendall(post(b"first"))
    assert read_answers(keep, 1)[0].status == 200
    busy = hold_busy(served.port)
    assert refused(served.port)  # `keep` was answered just now: its client may be sending again
    keep.sendall(post(b"second"))
    [answer] = read_answers(keep, 1)
    assert answer.status == 200 and answer.body == b'{"size": 6}'
    time.sleep(0.6)
    gives_way(served.port, keep)  # past the grace, `keep` is idle
    finish_busy(busy)


def test_a_connection_that_never_sent_a_byte_gives_way_after_the_grace(served, monkeypatch):
    monkeypatch.setattr(server_module, "SHED_GRACE_SECS", 0.5)
    idle = connect(served.port)
    busy = hold_busy(served.port)
    served.conn_of(idle)  # accepted
    assert refused(served.port)  # just opened: its client may be about to send its request
    time.sleep(0.6)
    gives_way(served.port, idle)
    finish_busy(busy)


def test_a_connection_whose_expiry_raises_is_aborted_and_the_others_still_expire(monkeypatch):
    """The sweeper is every connection's deadline: one connection's failure must not end it."""
    served = serve_in_thread(header_read_timeout_secs=0.5)
    broken, idle = connect(served.port), connect(served.port)
    conn, expire = served.conn_of(broken), HttpProtocol.expire

    def expire_but_one(self: HttpProtocol) -> None:
        if self is conn:
            raise RuntimeError("a bug in one connection's expiry")
        expire(self)

    monkeypatch.setattr(HttpProtocol, "expire", expire_but_one)
    for sock in (broken, idle):
        got, closed_after = read_until_closed(sock, 3)
        assert closed_after is not None, got
    assert read_until_closed(connect(served.port), 3)[1] is not None  # and later ones too
