"""High-level index backends: ``highlevel.type`` in the config picks one from ``LOADERS``; each imports lazily."""

from __future__ import annotations

from beaconlake.backends.highlevel.base import Capabilities, HighLevelEvent, HighLevelIndex
from beaconlake.backends.highlevel.settings import HighLevelSettings
from beaconlake.backends.loader import Loader, backend_for

LOADERS: dict[str, Loader] = {
    "sqlite": ("beaconlake.backends.highlevel.sqlite", "SqliteHighLevelIndex", None),
    "postgres": ("beaconlake.backends.highlevel.postgres", "PostgresHighLevelIndex", "postgres"),
}


def open_highlevel(settings: HighLevelSettings) -> HighLevelIndex:
    """The index the ``[highlevel]`` section (paths resolved) describes."""
    return backend_for("highlevel", settings, LOADERS).from_settings(settings)


__all__ = ["LOADERS", "Capabilities", "HighLevelEvent", "HighLevelIndex", "open_highlevel"]
