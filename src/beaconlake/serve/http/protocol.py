"""One HTTP/1.1 connection: httptools parses, a route handler or the ASGI bridge answers.

Invariants:

- **Order.** One request is answered at a time; requests pipelined behind it wait in a queue
  (and reading pauses) so answers go out in request order.
- **Deadlines.** The connection always has one while the client owes us bytes: the headers of
  a request within ``header_read_timeout_secs`` of the connection's start or of the previous
  answer (an idle keep-alive connection no longer than ``keepalive_idle_secs``); its body within
  ``body_read_timeout_secs`` of its headers (answered 408); a lingering close within
  ``drain_timeout_secs``; answers the client does not read (the transport's buffer over its
  high-water mark) read within ``send_timeout_secs``, and no request is read meanwhile, so a
  client that pipelines without reading cannot make us buffer without bound. None while the
  client waits on us. The server's sweeper enforces them.
- **Readable refusals.** An answer sent before the request's body has arrived (413, or any
  early refusal) says ``connection: close`` and is followed by a lingering close: the rest of
  the body is read and dropped (at most ``max_drain_bytes``, ``drain_timeout_secs``) so the
  client's send completes and it reads the answer rather than a reset. When the framing of what
  follows is unknown (malformed request, no Content-Length on a POST, headers too large) the
  server answers, shuts its side down and drops what arrives until the client closes.
- **Sheddable** means nothing of ours is in flight: no handler running, at most a partial
  request header received. Only such connections are shed at the cap (the server spares the
  ones opened or answered within a grace, and those with a request waiting unread).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import httptools

from beaconlake.serve.http import response
from beaconlake.serve.http.request import Request, failed
from beaconlake.serve.http.rules import merged, origin_form, problem

if TYPE_CHECKING:
    from beaconlake.serve.http.server import HttpServer

log = logging.getLogger(__name__)

IDLE, HEADERS, BODY, LINGER = "idle", "headers", "body", "linger"  # what the reading side waits for
monotonic = time.monotonic


class HttpProtocol(asyncio.Protocol):
    __slots__ = ("server", "limits", "loop", "body_error", "parser", "transport", "peer", "phase", "anchor",
                 "body_start", "linger_start", "write_since", "deadline", "why", "current", "queue", "reading", "served",
                 "closing", "stopped", "closed", "eof", "paused", "write_paused", "write_waiter", "url", "raw",
                 "header_chunks", "raw_header_bytes", "chunk_len", "messages", "now", "drained", "close_after_response", "task")

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = server.loop
        self.body_error = server.body_error
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.peer: str | None = None
        self.phase = IDLE
        self.now = self.anchor = self.body_start = self.linger_start = self.write_since = 0.0
        self.deadline = 0.0  # 0: none
        self.why = ""
        self.current: Request | None = None  # the request being answered
        self.queue: deque[Request] = deque()  # pipelined requests waiting for their turn
        self.reading: Request | None = None  # the request whose bytes are arriving
        self.served = 0
        self.closing = False  # no request after the current one(s)
        self.stopped = False  # parsing ended: what arrives is dropped
        self.closed = False  # we closed (or are closing) the transport
        self.eof = self.paused = self.write_paused = self.close_after_response = False
        self.write_waiter: asyncio.Future[None] | None = None
        self.url = b""
        self.raw: list[tuple[bytes, bytes]] = []  # the headers of the request being read, as received
        self.header_chunks = self.raw_header_bytes = self.chunk_len = self.drained = self.messages = 0
        self.task: asyncio.Task[None] | None = None

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else None
        self.now = self.anchor = monotonic()
        if self.server.admit(self):
            self.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.forget(self)
        for req in (self.current, self.reading, *self.queue):
            if req is not None:
                req.gone()
        self._wake_writer()

    def eof_received(self) -> bool:
        self.eof = True
        if self.phase is LINGER or (self.current is None and self.phase is not BODY):
            return False  # nothing owed either way: close
        if self.reading is not None:  # a body that can never end
            self.reading.gone()
            self.stopped = True
        self.closing = True
        return True  # keep our side open to send the answer in flight

    def data_received(self, data: bytes) -> None:
        self.now = monotonic()
        self.chunk_len = len(data)
        if self.stopped:
            self.dropped(len(data))
            return
        # the whole chunk is header bytes only if it starts and ends in the headers of one request
        was_headers, messages = self.phase is HEADERS, self.messages
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._after_upgrade(data[exc.args[0]:])
        except httptools.HttpParserCallbackError:
            log.exception("HTTP request handling failed in the parser's callbacks")
            self.reject(500, "internal_error", "the server failed to read this request")
        except httptools.HttpParserError as exc:
            if not self.stopped:
                self.reject(400, "malformed", f"malformed HTTP request: {exc}")
        if self.phase is HEADERS and not self.stopped:  # headers still incomplete after this chunk
            self.header_chunks += 1
            if was_headers and messages == self.messages:  # httptools holds them all: bound them
                self.raw_header_bytes += len(data)
                if self.raw_header_bytes > self.limits.max_header_bytes:
                    self._headers_too_large()
        self.arm()

    def pause_writing(self) -> None:
        """Our answers pile up unread: read no more requests until the client catches up."""
        self.write_paused = True
        self.write_since = monotonic()
        if not self.paused:
            self.transport.pause_reading()
        self.arm()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.paused and not self.closed:
            self.transport.resume_reading()
        self._wake_writer()
        if self.current is None and self.queue and not self.closed:
            self.now = monotonic()
            self._next()
        self.arm()

    # -- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.phase is LINGER:  # a request after one we answered with connection: close
            self.stopped = True
            return
        self.url = b""
        self.raw = []
        self.header_chunks = self.raw_header_bytes = 0
        self.messages += 1
        if self.current is not None:
            self.anchor = self.now  # pipelined: its wait starts now, not at the last answer
        self.phase = HEADERS

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw.append((name, value))  # the least per header: names are folded once, below

    def on_headers_complete(self) -> None:
        if self.stopped:
            return
        raw = self.raw
        # Only a request whose headers spanned chunks, or came in a chunk over the limit, can be over it.
        if (self.header_chunks or self.chunk_len > self.limits.max_header_bytes) and \
                len(self.url) + sum(len(n) + len(v) + 4 for n, v in raw) > self.limits.max_header_bytes:
            self._headers_too_large()
            return
        headers = {name.lower(): value for name, value in raw}
        if len(headers) != len(raw):
            headers = merged(raw)
        parser = self.parser
        method = parser.get_method().decode("ascii")
        url = self.url
        mark = url.find(b"?")
        target, query = (url[:mark], url[mark + 1:]) if mark >= 0 else (url, b"")
        http_10 = parser.get_http_version() == "1.0"
        length = headers.get(b"content-length")
        chunked = b"transfer-encoding" in headers
        refusal = problem(method, target, headers, http_10, length, chunked, parser.should_upgrade())
        if refusal is not None:
            self.reject(*refusal)
            return
        if target[:1] != b"/":
            target = origin_form(target)
        req = Request(self, method, target, query.decode("latin-1"), headers, http_10, parser.should_keep_alive())
        if length is not None:
            req.declared = int(length)
        req.expect_continue = not http_10 and b"expect" in headers  # HTTP/1.0 servers ignore it
        self.reading = req
        self.phase = BODY if chunked or req.declared > 0 else HEADERS  # the message completes at once otherwise
        self.body_start = self.now
        if self.current is None:
            self.start(req)
        else:
            self.queue.append(req)
            self._pause()

    def on_body(self, body: bytes) -> None:
        req = self.reading
        if req is None or self.stopped:
            return
        if req.discard:
            self.dropped(len(body))
            return
        req.size += len(body)
        if req.size > req.limit:
            req.overflow()
        else:
            req.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.stopped:
            return
        req, self.reading = self.reading, None
        if self.phase is LINGER:  # the rest of an answered request's body is drained
            if self.eof:
                self.close()
            else:  # say we are done and let the client close first: closing now would answer
                self.stopped = True  # what it sends next (a pipelined request) with a reset
                self.linger()
            return
        self.phase = IDLE
        if req is not None:
            req.complete = True
            req.wake()

    # -- answering ------------------------------------------------------------------------------

    def start(self, req: Request) -> None:
        self.current = req
        if req.error is not None:
            status, reason, message = req.error
            self.respond(req, status, [], response.error_body(reason, message))
            return
        self.body_start = self.now  # a pipelined body's deadline starts when it is its turn
        route = self.server.routes.get(req.raw_path)
        if route is not None:
            self.task = self.server.spawn(self._run_route(route, req))
        else:
            self.task = self.server.spawn(self.server.asgi(self, req))

    async def _run_route(self, route: Any, req: Request) -> None:
        try:
            status, headers, body = await route(req)
        except Exception:
            log.exception("%s %s failed", req.method, req.path)
            status, headers, body = 500, [], response.error_body("internal_error", "the server failed on this request")
        self.respond(req, status, headers, body)

    def respond(self, req: Request, status: int, headers: list[tuple[str, str]], body: bytes,
                content_type: bytes = response.JSON) -> None:
        """Send a whole answer to ``req`` (the current request), then move on."""
        if status >= 400 and req.error is not None:
            self.server.count_refusal(status)
        close = self.must_close(req)
        if not self.closed:
            self.transport.write(response.simple(status, headers, body, content_type, self.server.date,
                                                 response.connection_header(close, req.http_10), req.method == "HEAD"))
        self.done(req, close)

    def must_close(self, req: Request) -> bool:
        """Whether the answer to ``req`` ends the connection (decided before its headers go out).
        Requests already queued behind it are still answered, unless the client said close."""
        return (not req.keep_alive or not req.complete or req.error is not None or req.failure is not None
                or ((self.closing or self.stopped) and not self.queue))

    def done(self, req: Request, close: bool) -> None:
        """The answer to ``req`` is sent: close, linger, or take the next request."""
        self.current = self.task = None
        self.served += 1
        if self.closed:
            return
        if close:
            self.closing = True
            self.queue.clear()  # after "connection: close" nothing more is answered (RFC 9112 9.6)
            if self.close_after_response or self.eof:
                self.close()
            elif self.stopped:
                self.linger()  # framing unknown: drop what comes until the client closes
            elif self.reading is not None:
                self.reading.fail(self.body_error(400, "answered", "the request was answered before its body"))
                self.linger()  # drop the rest of this body, then close
            else:
                # a lingering close, as nginx does: what the client sends after our answer (a
                # request pipelined behind it, even one it should not send after "close") would
                # reach a closed socket, and the reset that answers it can destroy our answer
                # before the client reads it. Half-close, and let the client close first.
                self.stopped = True
                self.linger()
            return
        self.now = monotonic()
        if self.queue:
            if not self.write_paused:  # else resume_writing takes it: unread answers must not pile up
                self._next()
        elif self.phase is IDLE:
            self.anchor = self.now
        self.arm()

    def _next(self) -> None:
        nxt = self.queue.popleft()
        if not self.queue:
            self._resume()
        self.start(nxt)

    # -- deadlines, closing ---------------------------------------------------------------------

    def arm(self) -> None:
        """Set the deadline (and sheddability) for the state the connection is in now."""
        if self.closed:
            return
        phase, lim, busy = self.phase, self.limits, self.current is not None
        if self.write_paused:  # whatever else: the client must read what we sent
            self.deadline, self.why = self.write_since + lim.send_timeout_secs, "send_timeout"
        elif phase is LINGER:
            self.deadline, self.why = self.linger_start + lim.drain_timeout_secs, "drain_timeout"
        elif self.paused or (busy and phase is not BODY):
            self.deadline = 0.0  # the client waits on us (a pipelined request's deadline runs after)
        elif phase is BODY:
            self.deadline, self.why = self.body_start + lim.body_read_timeout_secs, "body_timeout"
        elif phase is HEADERS or not self.served:
            self.deadline, self.why = self.anchor + lim.header_read_timeout_secs, "header_timeout"
        elif lim.keepalive_idle_secs < lim.header_read_timeout_secs:
            self.deadline, self.why = self.anchor + lim.keepalive_idle_secs, "keepalive_idle"
        else:
            self.deadline, self.why = self.anchor + lim.header_read_timeout_secs, "header_timeout"
        self.server.sheddable(self, not busy and phase is not BODY and phase is not LINGER)

    def expire(self) -> None:
        """The deadline passed (called by the server's sweeper)."""
        why, phase = self.why, self.phase
        self.server.count_close(why)
        if why == "send_timeout":
            self.close(abort=True)
            return
        if phase is BODY and self.reading is not None:
            self.stopped = self.close_after_response = True
            self.reading.fail(self.body_error(
                408, "timeout", f"the body did not arrive within {self.limits.body_read_timeout_secs:g} s "
                                f"(server.body_read_timeout_secs)"))
            if self.current is None or self.current is not self.reading:
                self.close()
            else:  # its handler answers 408; make sure the connection ends even if it does not
                self.phase, self.linger_start = LINGER, self.now
                self.arm()
            return
        if phase is HEADERS and self.current is None:
            message = f"the request headers did not arrive within {self.limits.header_read_timeout_secs:g} s " \
                      "(server.header_read_timeout_secs)"
            self.server.count_refusal(408)
            self.transport.write(response.simple(408, [], response.error_body("timeout", message), response.JSON,
                                                 self.server.date, response.CLOSE, False))
        self.close()

    def close(self, abort: bool = False) -> None:
        """Close now: what is written still goes out first, unless ``abort`` (it will never be read)."""
        self.stopped = self.closed = True
        self.server.forget(self)
        if abort:
            self.transport.abort()
        else:
            self.transport.close()
        self._wake_writer()

    def linger(self) -> None:
        """Close once the client has sent what it was sending (see the module docstring)."""
        self.phase, self.linger_start = LINGER, monotonic()
        if self.stopped and self.transport.can_write_eof():
            self.transport.write_eof()  # the framing is unknown: say we are done; the client's EOF ends it
        self.arm()

    def dropped(self, size: int) -> None:
        self.drained += size
        if self.drained > self.limits.max_drain_bytes and not self.closed:
            self.server.count_close("drain_limit")
            self.close()

    def reject(self, status: int, reason: str, message: str) -> None:
        """Answer the request being read with an error, in its turn, and read nothing after it."""
        self.stopped = True
        if self.reading is not None:  # its handler may be waiting for a body that will not come
            self.reading.fail(self.body_error(status, reason, message))
            self.reading = None
        entry = failed(self, status, reason, message)
        if self.current is None:
            self.start(entry)
        else:
            self.queue.append(entry)

    def shutdown(self) -> None:
        """Server stopping: end idle connections now, the others after their answer."""
        self.closing = True
        if self.current is None and self.phase is IDLE and not self.closed:
            self.close()

    # -- helpers --------------------------------------------------------------------------------

    def body_wanted(self, req: Request) -> None:
        if req.expect_continue and not self.closed:
            req.expect_continue = False
            self.transport.write(response.CONTINUE)

    async def writable(self) -> None:
        """Wait while the transport's buffer is over its high-water mark (streamed answers)."""
        while self.write_paused and not self.closed:
            self.write_waiter = self.loop.create_future()
            await self.write_waiter

    def _wake_writer(self) -> None:
        waiter = self.write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pause(self) -> None:
        if not self.paused:
            self.paused = True
            if not self.write_paused:
                self.transport.pause_reading()

    def _resume(self) -> None:
        if self.paused:
            self.paused = False
            if not self.write_paused:
                self.transport.resume_reading()

    def _headers_too_large(self) -> None:
        self.reject(431, "headers_too_large",
                    f"request headers are over {self.limits.max_header_bytes} bytes, limit "
                    f"{self.limits.max_header_bytes} (server.max_header_bytes)")

    def _after_upgrade(self, rest: bytes) -> None:
        """Upgrades (WebSocket, h2c) are not offered: the request is served as plain HTTP/1.1 and
        what follows it is parsed as the next request."""
        if rest and not self.stopped:
            self.data_received(rest)

