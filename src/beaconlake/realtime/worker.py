"""What a server worker runs of the realtime stage, for the composition root (``serve.app``) to
wire: ``stats``, the router destination that folds each accepted batch into minute windows
(``stats.folder``); ``counters`` and ``index``, the read model the read API and the dashboard
query; ``housekeeping`` for the worker's clock and ``close`` for its shutdown. It serves nothing
itself: the realtime stage knows no HTTP."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

from beaconlake.backends.counters import open_counters
from beaconlake.backends.counters.windows import MINUTE_MS
from beaconlake.backends.highlevel import HighLevelIndex, open_highlevel
from beaconlake.config import Settings
from beaconlake.realtime.stats import StatsDestination
from beaconlake.telemetry import Metrics


class _LazyIndex:
    """Opened on the first read: a worker that serves no reads never connects."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._index: HighLevelIndex | None = None

    def __getattr__(self, attr: str):  # search, counts, person, close
        if self._index is None:
            if attr == "close":
                return lambda: None
            self._index = open_highlevel(self.settings.highlevel)
        return getattr(self._index, attr)


class WorkerRealtime:
    name = "realtime"

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.retention_ms = settings.realtime.retention_hours * 3_600_000
        self.counters = open_counters(settings.counters, role="collector", state_dir=settings.realtime_path,
                                      retention_ms=self.retention_ms)
        self.stats = StatsDestination(settings.realtime, self.counters, metrics)
        self.index: HighLevelIndex = _LazyIndex(settings)  # type: ignore[assignment]
        self.flush_secs = self.counters.capabilities.flush_interval_secs
        self._last_flush = time.monotonic()
        # A server backend's housekeeping (Redis: its prune's round trips) runs in a thread, one
        # call at a time, as its folds do: a hung server holds a call for its socket timeout,
        # which must be neither the event loop's time nor a queue of calls behind it.
        self._pool = None if self.counters.capabilities.in_process else \
            ThreadPoolExecutor(1, thread_name_prefix="counters-housekeeping")
        self._call: Future[None] | None = None

    def housekeeping(self) -> None:
        """Publish partials when due; forget windows past retention. What a call in the thread
        raised is raised here, on the tick after it ends, for the collector to count and log."""
        if self._call is not None:
            if not self._call.done():
                return
            call, self._call = self._call, None
            call.result()
        now = time.monotonic()
        if now - self._last_flush < self.flush_secs:
            return
        self._last_flush = now
        if self._pool is None:
            self._tidy()
        else:
            self._call = self._pool.submit(self._tidy)

    def _tidy(self) -> None:
        before = time.time_ns() // 1_000_000 - self.retention_ms
        self.counters.prune(before)
        self.stats.folder.prune(before - MINUTE_MS)
        self.counters.flush()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)  # pruning can wait for the next start
        self.counters.close()
        self.index.close()
