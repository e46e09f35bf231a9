"""Counters backends: ``counters.type`` in the config picks one; backends import lazily."""

from __future__ import annotations

from pathlib import Path

from beaconlake.backends.counters.base import Counters, IdSet
from beaconlake.config import MemoryCountersSettings, RedisCountersSettings, Settings
from beaconlake.errors import ConfigError


def open_counters(settings: Settings, role: str) -> Counters:
    c = settings.counters
    retention_ms = settings.realtime.retention_hours * 3_600_000
    if isinstance(c, MemoryCountersSettings):
        from beaconlake.backends.counters.memory import MemoryCounters

        return MemoryCounters(Path(settings.realtime_path) / "partials", role)
    if isinstance(c, RedisCountersSettings):
        try:
            from beaconlake.backends.counters.redis import RedisCounters
        except ImportError:
            raise ConfigError("counters.type = \"redis\" needs the redis client: pip install 'beaconlake[redis]'") from None
        return RedisCounters(c.url, c.key_prefix, retention_ms)
    raise TypeError(f"unknown counters settings {type(c).__name__}")


__all__ = ["Counters", "IdSet", "open_counters"]
