"""The bridge to an ASGI app (the Starlette side routes: dashboard, read API, /metrics...).

The request body is read whole first, under the server's body limit and deadline (the side
routes are small request/response handlers), so the app never waits on a slow client. The
answer may be whole (one write, ``content-length`` added when the app gave none) or streamed:
with the app's ``content-length``, else chunked, else (HTTP/1.0) delimited by closing the
connection. A streamed answer waits while the client reads slower than the app writes. An app
that fails before answering gets a 500; one that fails or returns mid-stream has its
connection closed, so the client can tell the answer is cut short.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from beaconlake.serve.http import response

if TYPE_CHECKING:
    from beaconlake.serve.http.protocol import HttpProtocol
    from beaconlake.serve.http.request import Request

log = logging.getLogger(__name__)
ASGI = {"version": "3.0", "spec_version": "2.3"}


async def serve(app: Any, conn: HttpProtocol, req: Request) -> None:
    try:
        body = await req.read_body(conn.limits.max_body_bytes)
    except conn.body_error as exc:
        err: Any = exc
        conn.server.count_refusal(err.status)
        conn.respond(req, err.status, err.headers, response.error_body(err.reason, err.error))
        return
    exchange = _Exchange(conn, req, body)
    try:
        await app(_scope(conn, req), exchange.receive, exchange.send)
    except Exception:
        log.exception("%s %s failed", req.method, req.path)
        exchange.failed()
    else:
        if not exchange.finished:
            log.error("%s %s: the app returned without finishing its answer", req.method, req.path)
            exchange.failed()
    finally:
        exchange.disconnect()


def _scope(conn: HttpProtocol, req: Request) -> dict[str, Any]:
    peer = conn.transport.get_extra_info("peername")
    here = conn.transport.get_extra_info("sockname")
    return {
        "type": "http",
        "asgi": ASGI,
        "http_version": "1.0" if req.http_10 else "1.1",
        "method": req.method,
        "scheme": "http",
        "path": unquote(req.path),
        "raw_path": req.raw_path,
        "query_string": req.query.encode("latin-1"),
        "root_path": "",
        "headers": list(req.headers.items()),
        "client": (peer[0], peer[1]) if isinstance(peer, tuple) else None,
        "server": (here[0], here[1]) if isinstance(here, tuple) else None,
    }


class _Exchange:
    """One request's receive/send pair."""

    def __init__(self, conn: HttpProtocol, req: Request, body: bytes) -> None:
        self.conn, self.req, self.body = conn, req, body
        self.delivered = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = self.streaming = self.finished = self.close = False
        self.framing = b""  # streamed: "length", "chunked" or "close"

    async def receive(self) -> dict[str, Any]:
        if not self.delivered:
            self.delivered = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        req = self.req
        if req.disconnected is None:
            req.disconnected = self.conn.loop.create_future()
            if self.conn.closed or self.finished:
                req.disconnected.set_result(None)
        await req.disconnected
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = message["status"]
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
        elif kind == "http.response.body":
            if not self.started or self.finished:
                raise RuntimeError("http.response.body before http.response.start, or after the last one")
            body, more = message.get("body", b""), message.get("more_body", False)
            if not self.streaming and not more:
                self._whole(body)
            else:
                await self._stream(body, more)

    def _whole(self, body: bytes) -> None:
        conn, req = self.conn, self.req
        self.finished = True
        close = conn.must_close(req)
        extra = b"" if _has(self.headers, b"content-length") else b"content-length: %d\r\n" % len(body)
        head = response.asgi_head(self.status, self.headers, conn.server.date, response.connection_header(close, req.http_10),
                                  extra)
        if not conn.closed:
            conn.transport.write(head if req.method == "HEAD" else head + body)
        conn.done(req, close)

    async def _stream(self, body: bytes, more: bool) -> None:
        conn, req = self.conn, self.req
        if not self.streaming:
            self.streaming = True
            self.close = conn.must_close(req)
            extra = b""
            if _has(self.headers, b"content-length"):
                self.framing = b"length"
            elif req.http_10:
                self.framing, self.close = b"close", True
            else:
                self.framing, extra = b"chunked", b"transfer-encoding: chunked\r\n"
            if not conn.closed:
                conn.transport.write(response.asgi_head(self.status, self.headers, conn.server.date,
                                                        response.connection_header(self.close, req.http_10), extra))
        if not conn.closed and req.method != "HEAD":
            if self.framing == b"chunked":
                if body:
                    conn.transport.write(b"%x\r\n%s\r\n" % (len(body), body))
                if not more:
                    conn.transport.write(b"0\r\n\r\n")
            elif body:
                conn.transport.write(body)
        if more:
            await conn.writable()
        else:
            self.finished = True
            conn.done(req, self.close)

    def failed(self) -> None:
        conn, req = self.conn, self.req
        if not self.streaming and not self.finished:  # nothing written yet: a whole 500 still fits
            self.finished = True
            conn.respond(req, 500, [], response.error_body("internal_error", "the server failed on this request"))
        elif not self.finished:
            self.finished = True
            conn.done(req, True)
            conn.close()  # a cut-short answer must not look complete

    def disconnect(self) -> None:
        fut = self.req.disconnected
        if fut is not None and not fut.done():
            fut.set_result(None)


def _has(headers: list[tuple[bytes, bytes]], name: bytes) -> bool:
    return any(k.lower() == name for k, _ in headers)
