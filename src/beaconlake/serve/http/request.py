"""One parsed HTTP request, and its body as the connection receives it.

A handler reads the body with ``await request.read_body(limit)``. Invariants:

- at most ``limit`` bytes (and never more than the server's ``max_body_bytes``) are kept in
  memory for a request; past that the rest is discarded as it arrives and ``read_body`` raises
  a 413, whose answer the connection sends before it drains the rest and closes;
- a declared ``Content-Length`` over the limit is refused before a byte of the body is read;
- ``Expect: 100-continue`` is answered only when the handler asks for the body, so a request
  refused on its headers never makes the client send its body;
- ``read_body`` never waits forever: the connection's body deadline, a client that goes away
  and a body over the limit each wake it with an error.

Errors are raised as ``conn.body_error(status, reason, message)``, a type the server is given
(the collector passes its own ``Refused``), so a handler catches them as its own.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from beaconlake.serve.http.protocol import HttpProtocol


class BodyError(Exception):
    """Why a request body could not be read: an HTTP status, a machine-readable reason, a message."""

    def __init__(self, status: int, reason: str, error: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(error)
        self.status, self.reason, self.error, self.headers = status, reason, error, headers or []


class Request:
    """What a handler sees of a request. ``headers`` maps lower-case names to values, as bytes
    (repeated headers joined with ", ", cookies with "; "); ``header(name)`` gives one as text;
    ``query`` is the raw query string."""

    __slots__ = ("conn", "method", "raw_path", "query", "headers", "peer", "http_10", "keep_alive",
                 "declared", "expect_continue", "chunks", "size", "limit", "complete", "discard", "failure",
                 "waiter", "error", "disconnected")

    def __init__(self, conn: HttpProtocol, method: str, raw_path: bytes, query: str, headers: dict[bytes, bytes],
                 http_10: bool, keep_alive: bool) -> None:
        self.conn = conn
        self.method = method
        self.raw_path = raw_path
        self.query = query
        self.headers = headers
        self.peer: str | None = conn.peer
        self.http_10 = http_10
        self.keep_alive = keep_alive
        self.declared = -1  # Content-Length, or -1 when the body is chunked or absent
        self.expect_continue = False
        self.chunks: list[bytes] = []
        self.size = 0  # body bytes received, kept or not
        self.limit = conn.limits.max_body_bytes
        self.complete = False  # the whole message (headers and body) has arrived
        self.discard = False  # body bytes are dropped as they arrive (over the limit, or answered already)
        self.failure: BaseException | None = None  # what read_body raises
        self.waiter: asyncio.Future[None] | None = None
        self.error: tuple[int, str, str] | None = None  # set on a request the server answers itself
        self.disconnected: asyncio.Future[None] | None = None  # the ASGI bridge's http.disconnect

    @property
    def path(self) -> str:
        return self.raw_path.decode("latin-1")

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (lower case), or None."""
        value = self.headers.get(name.encode("latin-1"))
        return None if value is None else value.decode("latin-1")

    async def read_body(self, limit: int) -> bytes:
        """The whole body, once it has arrived; raises the server's body error on a body over
        ``limit`` (413), one too slow (408) or a client gone before the end (400)."""
        if self.declared > limit:
            raise self.conn.body_error(413, "too_large", f"body is {self.declared} bytes, limit {limit}")
        if self.failure is None and not self.complete:
            if limit < self.limit:
                self.limit = limit
                if self.size > limit:
                    self.overflow()
            if self.failure is None:
                self.conn.body_wanted(self)
                self.waiter = self.conn.loop.create_future()
                try:
                    await self.waiter
                finally:
                    self.waiter = None
        if self.failure is not None:
            raise self.failure
        if self.size > limit:
            raise self.conn.body_error(413, "too_large", f"body is over {limit} bytes, limit {limit}")
        chunks = self.chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- called by the connection ------------------------------------------------------------

    def overflow(self) -> None:
        """The body passed the limit: keep nothing more of it, and let the handler know."""
        self.fail(self.conn.body_error(413, "too_large", f"body is over {self.limit} bytes, limit {self.limit}"))

    def fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        self.discard = True
        self.chunks = []
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def gone(self) -> None:
        """The connection is closed: no more body, and the ASGI side learns of the disconnect."""
        if not self.complete:
            self.fail(self.conn.body_error(400, "disconnected", "client went away before sending the whole body"))
        fut = self.disconnected
        if fut is not None and not fut.done():
            fut.set_result(None)


def failed(conn: HttpProtocol, status: int, reason: str, message: str) -> Request:
    """A request the server answers itself (malformed, unframed, headers too large...)."""
    req = Request(conn, "GET", b"/", "", {}, False, False)
    req.error = (status, reason, message)
    req.complete = True
    return req

