"""Simulated visitors over HTTP: the analyze stage's persona simulator, posted to the collector
as the tracker would (one batch per visit, the visit's user agent), so every event goes through
validation, the spool, delivery and the realtime stage like a real one.

History (visits that ended before now) is posted at once; the client clocks make their
``event_ts`` land in the past. Live visits are then posted one by one, each moved in time to
end now, so the Live view moves.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from beaconlake import simulate
from beaconlake.units import DAY_MS

log = logging.getLogger("beaconlake.demo")

MAX_BATCH = 500  # collector.max_batch_events


class Poster:
    def __init__(self, collector_url: str, write_key: str) -> None:
        self.url = f"{collector_url}/v1/events?k={write_key}"
        self.accepted = 0
        self.rejected = 0
        self._lock = threading.Lock()

    def post(self, events: list[dict], user_agent: str) -> None:
        for i in range(0, len(events), MAX_BATCH):
            chunk = events[i:i + MAX_BATCH]
            body = json.dumps({"sent_at": int(time.time() * 1000), "events": chunk}).encode()
            req = urllib.request.Request(self.url, body, {"content-type": "application/json", "user-agent": user_agent})
            for attempt in range(5):
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        answer = json.loads(r.read())
                    break
                except urllib.error.HTTPError as exc:
                    if exc.code != 503 or attempt == 4:  # 503: the spool is full for a moment; the tracker retries too
                        log.warning("collector refused a simulated batch: %s %s", exc.code, exc.read()[:300])
                        answer = {"accepted": 0, "rejected": chunk}
                        break
                    time.sleep(int(exc.headers.get("retry-after", "1")))
            with self._lock:
                self.accepted += answer["accepted"]
                self.rejected += len(answer["rejected"])


def history(people: int, days: int, seed: int, now_ms: int) -> Iterator[Any]:
    """Visits of the last ``days`` days (today included) that ended before now."""
    today = now_ms - now_ms % DAY_MS
    for v in simulate.visits(people, days, seed, today - (days - 1) * DAY_MS):
        if v.events[-1]["client_ts"] <= now_ms:
            yield v


def post_all(poster: Poster, visits: Iterable[Any], threads: int = 4) -> int:
    n = 0
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(lambda v: poster.post(v.events, v.user_agent), visits):
            n += 1
    return n


def shifted(visit: Any, end_ms: int) -> list[dict]:
    """The visit's events moved in time so that its last one happens at ``end_ms``."""
    delta = end_ms - visit.events[-1]["client_ts"]
    return [{**e, "client_ts": e["client_ts"] + delta} for e in visit.events]


def live(poster: Poster, people: int, days: int, seed: int, every_secs: float, stop: threading.Event) -> None:
    """A visit every ``every_secs`` until ``stop``: the same people's visits after now (the
    simulation goes on past today), each moved to end as it is sent, so they are returning visitors."""
    now = int(time.time() * 1000)
    today = now - now % DAY_MS
    source = (v for v in simulate.visits(people, days + 60, seed, today - (days - 1) * DAY_MS) if v.events[-1]["client_ts"] > now)
    while not stop.wait(every_secs):
        v = next(source, None)
        if v is None:
            return
        try:
            poster.post(shifted(v, int(time.time() * 1000)), v.user_agent)
        except OSError as exc:  # the collector is stopping
            log.info("live visitors stopped: %s", exc)
            return
