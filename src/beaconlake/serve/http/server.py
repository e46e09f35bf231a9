"""One worker's HTTP server: its routes, and the governance of all its connections.

Invariants:

- **Bounded connections.** At most ``max_connections`` are open. A new one over the cap first
  sheds the connection that has been idle longest (one with nothing of ours in flight); only
  when none is idle is the new one refused, with a 503 and ``Retry-After``. Shedding does not
  reset requests: a connection with unread bytes in its socket is not idle (closed, the kernel
  would answer the request we have not read yet with a reset), nor is one that has waited less
  than ``SHED_GRACE_SECS`` since it was opened or last answered (its client may be sending the
  request as we close: the fault suite saw clients reset while newer connections shed them).
  So connections that hold a slot doing nothing can never lock out for long a client that has
  a request to make. A refused connection is closed as an early answer is (a FIN after the
  503, what the client still sends dropped until its EOF, for at most ``REFUSED_LINGER_SECS``),
  so the client reads the 503 instead of a reset. At most ``max_connections // 8`` linger at once; past that the oldest is
  closed (a live client has read its answer within the second; one that has not is a flood's).
- **Deadlines.** Each connection carries its own deadline (see ``protocol``); a sweeper task
  closes the ones past it every ``tick_secs`` (a fraction of the shortest timeout), so a timeout
  fires at most one tick late and the hot path never touches a timer.
- **Counted.** Every connection closed by a deadline, the drain cap, shedding or refusal is
  counted in ``beaconlake_http_connections_closed_total{reason}``; every request answered by
  the server itself (malformed, unframed, too slow...) in ``beaconlake_http_refused_total{code}``.
- **Fair share of a shared socket.** A worker accepts one connection per turn of its event
  loop, and leaves it to the others while it holds more than they do (``balance``).
- **Clean stop.** ``shutdown`` closes idle connections, lets requests in flight finish (their
  answers say ``connection: close``) until ``shutdown_timeout_secs``, then cancels the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import socket
import sys
import termios
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from beaconlake.config import Settings
from beaconlake.serve.http import asgi, balance, response
from beaconlake.serve.http.protocol import HttpProtocol
from beaconlake.serve.http.request import BodyError, Request
from beaconlake.telemetry import Metrics

log = logging.getLogger(__name__)
Route = Callable[[Request], Awaitable[tuple[int, list[tuple[str, str]], bytes]]]
BACKLOG = 2048
REFUSED_LINGER_SECS = 1.0
SHED_GRACE_SECS = 0.5


@dataclass(frozen=True, slots=True)
class Limits:
    keepalive_idle_secs: float
    header_read_timeout_secs: float
    body_read_timeout_secs: float
    max_header_bytes: int
    max_body_bytes: int
    max_connections: int
    max_drain_bytes: int
    drain_timeout_secs: float
    send_timeout_secs: float
    retry_after_secs: int
    shutdown_timeout_secs: float

    @classmethod
    def from_settings(cls, settings: Settings, max_connections: int | None = None) -> Limits:
        s = settings.server
        return cls(s.keepalive_idle_secs, s.header_read_timeout_secs, s.body_read_timeout_secs, s.max_header_bytes,
                   settings.collector.max_body_bytes, max_connections or s.max_connections_per_worker,
                   s.max_drain_bytes, s.drain_timeout_secs, s.send_timeout_secs, settings.spool.retry_after_secs,
                   s.shutdown_timeout_secs)


class HttpServer:
    """``routes`` (exact path -> handler answering JSON) take the fast path; every other path
    goes to ``asgi_app``. ``body_error`` is the exception type ``Request.read_body`` raises."""

    def __init__(self, routes: dict[str, Route], asgi_app: Any, limits: Limits, metrics: Metrics | None = None,
                 body_error: type[Exception] = BodyError, shares: balance.Shares | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.routes = {path.encode("latin-1"): route for path, route in routes.items()}
        self.asgi = functools.partial(asgi.serve, asgi_app)
        self.limits = limits
        self.metrics = metrics
        self.body_error = body_error
        self.shares = shares
        self.conns: set[HttpProtocol] = set()
        self.refusing: dict[HttpProtocol, None] = {}  # refused at the cap, closing once the client has read why
        self._idle: dict[HttpProtocol, None] = {}  # insertion order: the longest idle first
        self.tasks: set[asyncio.Task[None]] = set()
        self.date = response.date_header()
        self._date_secs = int(time.time())
        shortest = min(limits.keepalive_idle_secs, limits.header_read_timeout_secs, limits.body_read_timeout_secs,
                       limits.drain_timeout_secs, limits.send_timeout_secs)
        self.tick_secs = min(max(shortest / 4, 0.05), 0.5)
        self._sock: socket.socket | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        if self.shares is not None:
            self.shares.publish(0)  # only now: the others leave connections to a worker that accepts
        self.loop.add_reader(sock.fileno(), self._accept)
        self._sweeper = self.loop.create_task(self._sweep_forever())

    def _accept(self) -> None:
        """One connection per readiness: the other workers of the socket get their turn."""
        if self.shares is not None and self.shares.defer(len(self.conns)):
            self.loop.remove_reader(self._sock.fileno())
            self.loop.call_later(balance.DEFER_SECS, self._resume_accepts)
            return
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                raise
            # out of descriptors or memory: leave the connection to another worker for a moment
            log.warning("cannot accept a connection (%s); pausing accepts for 0.1 s", exc.strerror)
            self.loop.remove_reader(self._sock.fileno())
            self.loop.call_later(0.1, self._resume_accepts)
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.spawn(self._connect(conn))

    def _resume_accepts(self) -> None:
        if self._sock is not None:
            self.loop.add_reader(self._sock.fileno(), self._accept)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: HttpProtocol(self), conn)
        except OSError:
            conn.close()  # reset before we could use it

    # -- connections ----------------------------------------------------------------------------

    def admit(self, conn: HttpProtocol) -> bool:
        if len(self.conns) >= self.limits.max_connections:
            victim = self._victim(time.monotonic())
            if victim is None:
                self._refuse(conn)
                return False
            self.count_close("shed")
            victim.close(abort=victim.write_paused)  # an answer it leaves unread is dropped with it
        self.conns.add(conn)
        if self.shares is not None:
            self.shares.publish(len(self.conns))
        return True

    def _victim(self, now: float) -> HttpProtocol | None:
        """The longest-idle connection past its grace with nothing unread. ``_idle`` is in the
        order connections became idle, which is their anchors' order: the scan stops at the
        first one within its grace, so a flood of young connections costs no walk of them all."""
        for conn in self._idle:
            if now - conn.anchor < SHED_GRACE_SECS:
                return None
            if not unread(conn):
                return conn
        return None

    def forget(self, conn: HttpProtocol) -> None:
        self.refusing.pop(conn, None)
        if conn in self.conns:
            self.conns.discard(conn)
            if self.shares is not None:
                self.shares.publish(len(self.conns))
        self._idle.pop(conn, None)

    def sheddable(self, conn: HttpProtocol, idle: bool) -> None:
        if idle:
            if conn not in self._idle:
                self._idle[conn] = None
        else:
            self._idle.pop(conn, None)

    def _refuse(self, conn: HttpProtocol) -> None:
        self.count_close("refused")
        self.count_refusal(503)
        message = (f"this worker has {len(self.conns)} connections open, all busy, limit "
                   f"{self.limits.max_connections} (server.max_connections_per_worker); retry later")
        conn.stopped = True
        conn.transport.write(response.simple(503, [("retry-after", str(self.limits.retry_after_secs))],
                                             response.error_body("overloaded", message), response.JSON, self.date,
                                             response.CLOSE, False))
        if len(self.refusing) >= max(1, self.limits.max_connections // 8):
            next(iter(self.refusing)).close()  # the oldest: descriptors are what the cap protects
        # Closed at once, the request bytes the client already sent make the kernel answer a reset,
        # which the client may read before the 503 (the fault suite saw 329 resets to 18 503s).
        self.refusing[conn] = None
        conn.linger()
        conn.deadline = conn.linger_start + min(REFUSED_LINGER_SECS, self.limits.drain_timeout_secs)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a request's handler; shutdown waits for every one, even if its client left."""
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- metrics --------------------------------------------------------------------------------

    def count_close(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.inc("beaconlake_http_connections_closed_total", reason=reason)

    def count_refusal(self, status: int) -> None:
        if self.metrics is not None:
            self.metrics.inc("beaconlake_http_refused_total", code=str(status))

    # -- deadlines ------------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_secs)
            self.sweep()

    def sweep(self) -> None:
        now = time.monotonic()
        secs = int(time.time())
        if secs != self._date_secs:
            self._date_secs, self.date = secs, response.date_header()
        for conn in [c for c in (*self.conns, *self.refusing) if 0.0 < c.deadline <= now]:
            conn.now = now
            try:
                conn.expire()
            except Exception:  # a bug on one connection must not end every other's deadlines
                log.exception("expiring a connection failed; it is aborted")
                with contextlib.suppress(Exception):
                    conn.close(abort=True)

    # -- stopping -------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop accepting, let requests in flight finish (bounded), close every connection."""
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()  # this process's copy of the listening socket
            self._sock = None
        for conn in list(self.refusing):
            conn.close()
        for conn in list(self.conns):
            conn.shutdown()
        deadline = time.monotonic() + self.limits.shutdown_timeout_secs
        while (self.conns or self.tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.conns):
            self.count_close("shutdown")
            conn.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=1.0)
        if self._sweeper is not None:
            self._sweeper.cancel()


def unread(conn: HttpProtocol) -> bool:
    """Whether the kernel holds bytes the connection has not read yet: a request that arrived
    while the event loop was busy (or a connection accepted in the same turn) looks idle to us
    until its ``data_received`` runs."""
    sock = conn.transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        return int.from_bytes(fcntl.ioctl(sock.fileno(), termios.FIONREAD, bytes(4)), sys.byteorder) > 0
    except OSError:  # closed under us: nothing to protect
        return False
