"""A small load generator for the fault tests and ``bench/soak``: concurrent loops that post
batches of events with known ids to a real collector and keep a ledger of what was answered.

Event ids are UUIDs that carry a sequence number (``Ledger``), so the ledger is a byte per
event, not a set of strings: a ten-minute soak acknowledges millions. An id is *acknowledged*
only when its request got a 200 whose body counts every event of the batch as accepted; any
other answer (a 503, a timeout, a reset) leaves it unacknowledged, and the invariant says
nothing about it: it may or may not be in the lake, as a client that retries would resend it.

Half of the loops open a new connection per request, so with several server workers every
worker gets traffic (a kept-alive connection stays on the worker that accepted it).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import uuid
from array import array

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
    (seconds of each 200), ``errors_5xx`` (the first few 5xx other than 503, with their bodies)."""

    def __init__(self, url: str, write_key: str, *, connections: int = 8, rate: float | None = None,
                 batch_events: int = 10, timeout_secs: float = 5.0, ledger: Ledger | None = None,
                 levels: tuple[str, ...] = ("mid", "low")) -> None:
        self.url = f"{url}/v1/events?k={write_key}"
        self.connections, self.rate, self.batch_events = connections, rate, batch_events
        self.timeout_secs = timeout_secs
        self.levels = levels
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
        limits = httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)
        async with httpx.AsyncClient(timeout=self.timeout_secs, limits=limits) as client:
            await asyncio.gather(*(self._loop(client, fresh=i % 2 == 1) for i in range(self.connections)))

    async def _loop(self, client: httpx.AsyncClient, fresh: bool) -> None:
        headers = {"content-type": "text/plain"}
        if fresh:
            headers["connection"] = "close"
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
                r = await client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                self.statuses[type(exc).__name__] += 1
                await asyncio.sleep(0.02)
                continue
            self.statuses[r.status_code] += 1
            if r.status_code == 200 and r.json().get("accepted") == len(ids):
                self.latencies.append(time.monotonic() - t0)
                self.ledger.ack(start, len(ids))
            elif r.status_code >= 500:
                if r.status_code != 503 and len(self.errors_5xx) < 5:
                    self.errors_5xx.append((r.status_code, r.text[:500]))
                await asyncio.sleep(0.05)  # as a client honouring Retry-After would, briefly
