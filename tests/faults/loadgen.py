"""A small load generator for the fault tests and ``bench/soak``: concurrent loops that post
batches of events with known ids to a real collector and keep a ledger of what was answered.

Event ids are UUIDs that carry a sequence number (``Ledger``), so the ledger is a byte per
event, not a set of strings: a ten-minute soak acknowledges millions. An id is *acknowledged*
only when its request got a 200 whose body counts every event of the batch as accepted; any
other answer (a 503, a timeout, a reset) leaves it unacknowledged, and the invariant says
nothing about it: it may or may not be in the lake, as a client that retries would resend it.

By default half of the loops open a new connection per request, so with several server workers
every worker gets traffic (a kept-alive connection stays on the worker that accepted it).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import uuid
from array import array
from urllib.parse import urlsplit

import httpx
import msgspec

SENT, ACKED = 1, 2


class Ledger:
    """What happened to each event id a load sent: a byte per id, indexed by its number."""

    def __init__(self) -> None:
        # a random v4 prefix: ids of two runs (or two loads) never collide
        head = uuid.uuid4().hex
        self.prefix = f"{head[:8]}-{head[8:12]}-4{head[13:16]}-8{head[17:20]}-"
        self.state = bytearray()
        self.lock = threading.Lock()

    def new_ids(self, count: int) -> tuple[int, list[str]]:
        with self.lock:
            start = len(self.state)
            self.state.extend(bytes([SENT]) * count)
        return start, [f"{self.prefix}{n:012x}" for n in range(start, start + count)]

    def ack(self, start: int, count: int) -> None:
        self.state[start:start + count] = bytes([ACKED]) * count

    def number(self, event_id: str) -> int | None:
        """The sequence number of one of our ids; None for an id this ledger never made."""
        if not event_id.startswith(self.prefix):
            return None
        n = int(event_id[len(self.prefix):], 16)
        return n if n < len(self.state) else None

    def id_of(self, n: int) -> str:
        return f"{self.prefix}{n:012x}"

    @property
    def acked_count(self) -> int:
        return self.state.count(ACKED)

    def acked_ids(self) -> set[str]:
        return {self.id_of(n) for n, s in enumerate(self.state) if s == ACKED}


class Load:
    """``connections`` loops posting batches of ``batch_events`` events (``rate``: requests a
    second in all, None: as fast as answers come) until ``stop()``. Thread-safe to read while
    it runs: ``ledger``, ``statuses`` (status code or exception name -> count), ``latencies``
    (seconds of each 200), ``errors_5xx`` (the first few 5xx other than 503, with their bodies).
    ``fresh_share``: the share of loops that open a new connection for each request.
    ``transport``: ``httpx`` (the tests), or ``raw`` (``RawConnection``, several times cheaper)."""

    def __init__(self, url: str, write_key: str, *, connections: int = 8, rate: float | None = None,
                 batch_events: int = 10, timeout_secs: float = 5.0, ledger: Ledger | None = None,
                 levels: tuple[str, ...] = ("mid", "low"), fresh_share: float = 0.5, transport: str = "httpx") -> None:
        self.url = f"{url}/v1/events?k={write_key}"
        self.connections, self.rate, self.batch_events = connections, rate, batch_events
        self.timeout_secs = timeout_secs
        self.levels = levels
        self.fresh = round(connections * fresh_share)  # loops that open a connection per request
        self.transport = transport  # "httpx", or "raw" (RawConnection: for a soak's rates)
        self.ledger = ledger or Ledger()
        self.statuses: collections.Counter[int | str] = collections.Counter()
        self.latencies = array("d")
        self.errors_5xx: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._encoder = msgspec.json.Encoder()

    # -- control ----------------------------------------------------------------------------

    def start(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="fault-load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Load:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_secs * 3 + 5)
            assert not self._thread.is_alive(), "the load generator did not stop"
        return self

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_acked(self, more: int, timeout: float = 30.0) -> None:
        """Until ``more`` ids beyond those acknowledged now are acknowledged."""
        target = self.ledger.acked_count + more
        deadline = time.monotonic() + timeout
        while self.ledger.acked_count < target:
            assert time.monotonic() < deadline, (
                f"only {self.ledger.acked_count} of {target} events acknowledged in {timeout:.0f}s; "
                f"answers so far: {dict(self.statuses)}")
            time.sleep(0.05)

    @property
    def served(self) -> int:
        return sum(n for k, n in self.statuses.items() if isinstance(k, int))

    def unexpected(self) -> dict[int | str, int]:
        """Answers a collector must never give, whatever the fault: a 5xx other than 503."""
        return {k: n for k, n in self.statuses.items() if isinstance(k, int) and k >= 500 and k != 503}

    # -- the loops --------------------------------------------------------------------------

    def _body(self, ids: list[str], n: int) -> bytes:
        now = int(time.time() * 1000)
        events = [{"event_id": event_id, "level": self.levels[i % len(self.levels)],
                   "name": "page_view" if self.levels[i % len(self.levels)] != "low" else "click",
                   "anonymous_id": f"visitor-{(n + i) % 500}", "client_ts": now - 50 * (len(ids) - i),
                   "url": f"https://shop.example/p/{(n + i) % 40}", "props": {"n": i}}
                  for i, event_id in enumerate(ids)]
        return self._encoder.encode({"sent_at": now, "events": events})

    async def _run(self) -> None:
        if self.transport == "raw":
            await asyncio.gather(*(self._loop(RawConnection(self.url, self.timeout_secs).post, fresh=i < self.fresh)
                                   for i in range(self.connections)))
            return
        limits = httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)
        async with httpx.AsyncClient(timeout=self.timeout_secs, limits=limits) as client:

            async def post(body: bytes, fresh: bool) -> tuple[int, bytes]:
                headers = {"content-type": "text/plain", **({"connection": "close"} if fresh else {})}
                r = await client.post(self.url, content=body, headers=headers)
                return r.status_code, r.content

            await asyncio.gather(*(self._loop(post, fresh=i < self.fresh) for i in range(self.connections)))

    async def _loop(self, post, fresh: bool) -> None:
        interval = self.connections / self.rate if self.rate else 0.0
        next_at = time.monotonic()
        while not self._stop.is_set():
            if interval:
                next_at = max(next_at + interval, time.monotonic() - 1.0)  # never a burst to catch up
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            start, ids = self.ledger.new_ids(self.batch_events)
            body = self._body(ids, start)
            t0 = time.monotonic()
            try:
                status, answer = await post(body, fresh)
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                self.statuses[type(exc).__name__] += 1
                await asyncio.sleep(0.02)
                continue
            self.statuses[status] += 1
            if status == 200 and msgspec.json.decode(answer).get("accepted") == len(ids):
                self.latencies.append(time.monotonic() - t0)
                self.ledger.ack(start, len(ids))
            elif status >= 500:
                if status != 503 and len(self.errors_5xx) < 5:
                    self.errors_5xx.append((status, answer[:500].decode(errors="replace")))
                await asyncio.sleep(0.05)  # as a client honouring Retry-After would, briefly


class RawConnection:
    """HTTP/1.1 POSTs on one kept-alive connection, written by hand: several times cheaper than
    httpx, for a soak that must load the collector rather than itself. Never resends a request
    (a retry of a request the server may have taken would be a client's duplicate, not the
    pipeline's). Expects what the collector sends: a Content-Length on every answer."""

    def __init__(self, url: str, timeout_secs: float) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.target = f"{parts.path}?{parts.query}" if parts.query else parts.path
        self.timeout_secs = timeout_secs
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes, fresh: bool) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._post(body, fresh), self.timeout_secs)
        except BaseException:
            self.close()
            raise

    async def _post(self, body: bytes, fresh: bool) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        close = "Connection: close\r\n" if fresh else ""
        head = (f"POST {self.target} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\n{close}\r\n")
        self.writer.write(head.encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        answer = await self.reader.readexactly(int(fields.get("content-length", "0")))
        if fresh or fields.get("connection", "").lower() == "close":
            self.close()
        return status, answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
