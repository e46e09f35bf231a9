"""Mid-level statistics: a router destination that folds each batch into minute windows.

Runs in every collector worker after the batch is durable (a failure is counted, never
un-acknowledged). Windows are on event time; a window [s, s+60s) accepts events until
``s + 60s + realtime.allowed_lateness_secs`` on the collector's clock, which is also the
clock ``event_ts`` is anchored to, so every process agrees when a window closes without
talking to the others. Events later than that are counted as late
(``beaconlake_stats_late_events_total``) and left out, rather than put in a wrong window;
the raw lake still has them. A numeric property out of the statistics' range (see
``backends.counters.windows.MAX_ABS_NUMBER``) is skipped and counted (``beaconlake_stats_skipped_values_total``);
nothing in an event's props can keep the event, or its batch, out of the counts.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import msgspec

from beaconlake.backends.counters import Counters
from beaconlake.backends.counters.windows import (
    ALL_PATHS,
    MINUTE_MS,
    OTHER_PATHS,
    Agg,
    numbers_of,
)
from beaconlake.ingest.route import Batch
from beaconlake.realtime.settings import RealtimeSettings
from beaconlake.telemetry import Metrics
from beaconlake.types import LEVELS

_props = msgspec.json.Decoder()
# For props with a number past a double's range (1e400): valid JSON, which the collector keeps as
# it came, but the plain decoder refuses it. float() makes it an infinity, which is then skipped.
_props_wide = msgspec.json.Decoder(float_hook=float)

# Every JSON number has a digit (0.3 us to look, 0.7 us to decode and scan the props)
_DIGIT_B, _DIGIT_S = re.compile(rb"[0-9]").search, re.compile(r"[0-9]").search


def decode_props(data: bytes) -> Any:
    try:
        return _props.decode(data)
    except msgspec.DecodeError:
        try:
            return _props_wide.decode(data)
        except msgspec.DecodeError:
            return None  # not JSON: the collector checks props, so this only guards the fold


@functools.lru_cache(maxsize=8192)
def page_path(url: str | None) -> str:
    if not url:
        return "/"
    try:
        return urlsplit(url).path or "/"
    except ValueError:
        return "/"


class Folder:
    """Folds events into a batch of minute windows, enforcing lateness and the path cap."""

    def __init__(self, settings: RealtimeSettings) -> None:
        self.lateness_ms = int(settings.allowed_lateness_secs * 1000)
        self.path_events = frozenset(settings.path_events)
        self.max_paths = settings.max_paths_per_window
        self.max_numbers = settings.max_numeric_props
        self._paths: dict[tuple[str, str, int], set[str]] = {}  # this process's paths per window
        self.skipped = 0  # numbers left out of the statistics as out of range, ever
        self._skipped_lock = threading.Lock()  # folds of the Redis backend run in threads

    def is_late(self, event_ts: int, now_ms: int) -> bool:
        return event_ts - event_ts % MINUTE_MS + MINUTE_MS + self.lateness_ms <= now_ms

    def fold(self, tenant: str, events: Iterable[tuple[Any, int]], now_ms: int, into: dict, new_sketch: Any) -> int:
        """Fold (event, event_ts) pairs of one tenant into the windows of ``into`` (keyed
        (tenant, name, group, minute)); return how many were too late. An event is anything
        with ``name``, ``anonymous_id``, ``url`` and ``props`` (JSON bytes or text, or None). This
        is the per-event hot path of every collector worker: plain tuples, no per-event objects
        but the window's."""
        late = skipped = 0
        closed = now_ms - self.lateness_ms - MINUTE_MS  # a window starting here or before is closed
        path_events, max_numbers, get = self.path_events, self.max_numbers, into.get
        for ev, ts in events:
            minute = ts - ts % MINUTE_MS
            if minute <= closed:
                late += 1
                continue
            name, anon, props = ev.name, ev.anonymous_id, ev.props
            nums = None
            # None, "null" and "{}" hold no number, nor does JSON without a digit: skip decoding
            if props is not None and len(props) > 4 and (_DIGIT_S if type(props) is str else _DIGIT_B)(props):
                nums, out_of_range = numbers_of(decode_props(props), max_numbers)
                skipped += out_of_range
            key = (tenant, name, ALL_PATHS, minute)
            agg = get(key)
            if agg is None:
                agg = into[key] = Agg(new_sketch())
            agg.count += 1
            agg.sketch.add(anon)
            if nums:
                agg.add_numbers(nums)
            if name in path_events:
                key = (tenant, name, self._path_group(tenant, name, minute, page_path(ev.url)), minute)
                agg = get(key)
                if agg is None:
                    agg = into[key] = Agg(new_sketch())
                agg.count += 1
                agg.sketch.add(anon)
                if nums:
                    agg.add_numbers(nums)
        if skipped:
            with self._skipped_lock:
                self.skipped += skipped
        return late

    def _path_group(self, tenant: str, name: str, minute: int, path: str) -> str:
        seen = self._paths.setdefault((tenant, name, minute), set())
        if path in seen:
            return path
        if len(seen) >= self.max_paths:
            return OTHER_PATHS
        seen.add(path)
        return path

    def prune(self, before_ms: int) -> None:
        # list() copies the keys in one step under the GIL: folds in other threads (a server
        # backend's) may add windows meanwhile, which iterating the dict itself would not survive
        for k in [k for k in list(self._paths) if k[2] < before_ms]:
            self._paths.pop(k, None)


# A fold into a server backend (Redis) runs in a thread. The request's answer waits for it at
# most MAX_FOLD_WAIT_SECS, and while MAX_FOLDS_IN_FLIGHT are still running (the server is slow
# or hung) a batch's statistics are skipped at once: a hung Redis must never hold up ingest.
# (Found by the fault suite: with Redis stopped, every request waited for its socket timeout.)
MAX_FOLD_WAIT_SECS = 0.5
MAX_FOLDS_IN_FLIGHT = 4


class CountersBusy(Exception):
    """The counters backend is too slow to fold this batch now; its statistics are skipped."""


class StatsDestination:
    """Router destination for mid- and high-level events (low-level ones are not counted)."""

    name = "stats"
    # It takes every batch whole and counts its mid- and high-level events itself: a copy of
    # the spool record for the router's per-level part cost more than the fold (1.8 us a request).
    levels = frozenset(LEVELS)
    counted = frozenset({"mid", "high"})
    durable = False

    def __init__(self, settings: RealtimeSettings, counters: Counters, metrics: Metrics) -> None:
        self.folder = Folder(settings)
        self.counters = counters
        self.metrics = metrics
        self._skipped_reported = 0
        # Counters kept in this process are a dict update: cheaper inline than a hop to a thread.
        self.inline = counters.capabilities.in_process
        self.in_flight = 0

    async def deliver(self, batch: Batch) -> None:
        rec = batch.record
        sent_at = rec.sent_at
        skew = rec.received_at - sent_at
        counted = self.counted
        pairs = [(ev, (ev.client_ts if ev.client_ts is not None else sent_at) + skew)
                 for ev in batch.events if ev.level in counted]
        if not pairs:
            return
        now = time.time_ns() // 1_000_000
        if self.inline:
            late = self.counters.fold(self.folder, rec.tenant, pairs, now)
        else:
            late = await self._fold_in_thread(rec.tenant, pairs, now)
        if late:
            self.metrics.inc("beaconlake_stats_late_events_total", late)
        self.metrics.inc("beaconlake_stats_events_total", len(pairs) - late)
        skipped = self.folder.skipped  # folds may run in threads; this runs on the event loop
        if skipped > self._skipped_reported:
            self.metrics.inc("beaconlake_stats_skipped_values_total", skipped - self._skipped_reported)
            self._skipped_reported = skipped

    async def _fold_in_thread(self, tenant: str, pairs: list, now: int) -> int:
        if self.in_flight >= MAX_FOLDS_IN_FLIGHT:
            raise CountersBusy(f"{self.in_flight} folds into the counters backend still running; "
                               "this batch's statistics are skipped")
        self.in_flight += 1
        fold = asyncio.get_running_loop().run_in_executor(None, self.counters.fold, self.folder, tenant, pairs, now)
        fold.add_done_callback(self._folded)
        try:
            return await asyncio.wait_for(asyncio.shield(fold), MAX_FOLD_WAIT_SECS)
        except TimeoutError:
            raise CountersBusy(f"the counters backend took over {MAX_FOLD_WAIT_SECS}s; the answer did not wait "
                               "(the fold goes on)") from None

    def _folded(self, fold: asyncio.Future) -> None:
        self.in_flight -= 1
        if not fold.cancelled():
            fold.exception()  # retrieved: a fold the answer stopped waiting for may fail unseen
