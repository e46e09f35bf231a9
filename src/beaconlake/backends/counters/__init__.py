"""Counters backends: ``counters.type`` in the config picks one from ``LOADERS``; each imports lazily."""

from __future__ import annotations

from pathlib import Path

from beaconlake.backends.counters.base import Capabilities, Counters, IdSet
from beaconlake.backends.counters.settings import CountersSettings
from beaconlake.backends.loader import Loader, backend_for

LOADERS: dict[str, Loader] = {
    "memory": ("beaconlake.backends.counters.memory", "MemoryCounters", None),
    "redis": ("beaconlake.backends.counters.redis", "RedisCounters", "redis"),
}


def open_counters(settings: CountersSettings, *, role: str, state_dir: Path, retention_ms: int) -> Counters:
    """This process's handle on the counters of the ``[counters]`` section (see ``Counters.from_settings``)."""
    return backend_for("counters", settings, LOADERS).from_settings(
        settings, role=role, state_dir=Path(state_dir), retention_ms=retention_ms)


def prepare_counters(settings: CountersSettings, *, state_dir: Path, before_ms: int) -> int:
    """The backend's start-up work, before any process opens it (see ``Counters.prepare``)."""
    return backend_for("counters", settings, LOADERS).prepare(settings, state_dir=Path(state_dir), before_ms=before_ms)


__all__ = ["LOADERS", "Capabilities", "Counters", "IdSet", "open_counters", "prepare_counters"]
