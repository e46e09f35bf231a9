"""What a collector worker runs of the realtime stage: the stats destination, its counters,
and the read API's routes."""

from __future__ import annotations

import time

from starlette.routing import Route

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
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        from beaconlake.serve.api import ReadApi

        self.settings = settings
        self.retention_ms = settings.realtime.retention_hours * 3_600_000
        self.counters = open_counters(settings.counters, role="collector", state_dir=settings.realtime_path,
                                      retention_ms=self.retention_ms)
        self.stats = StatsDestination(settings.realtime, self.counters, metrics)
        self.index = _LazyIndex(settings)
        self.api = ReadApi(settings, self.counters, self.index)  # type: ignore[arg-type]
        self.flush_secs = self.counters.capabilities.flush_interval_secs
        self._last_flush = time.monotonic()

    def routes(self) -> list[Route]:
        return self.api.routes()

    def housekeeping(self) -> None:
        """Publish partials when due; forget windows past retention."""
        now = time.monotonic()
        if now - self._last_flush < self.flush_secs:
            return
        self._last_flush = now
        before = time.time_ns() // 1_000_000 - self.retention_ms
        self.counters.prune(before)
        self.stats.folder.prune(before - MINUTE_MS)
        self.counters.flush()

    def close(self) -> None:
        self.counters.close()
        self.index.close()
