"""High-level index backends: ``highlevel.type`` in the config picks one; backends import lazily."""

from __future__ import annotations

from beaconlake.backends.highlevel.base import HighLevelEvent, HighLevelIndex
from beaconlake.config import (
    HighLevelSettings,
    PostgresHighLevelSettings,
    SqliteHighLevelSettings,
)
from beaconlake.errors import ConfigError


def open_highlevel(settings: HighLevelSettings) -> HighLevelIndex:
    if isinstance(settings, SqliteHighLevelSettings):
        from beaconlake.backends.highlevel.sqlite import SqliteHighLevelIndex

        return SqliteHighLevelIndex(settings.path)
    if isinstance(settings, PostgresHighLevelSettings):
        try:
            from beaconlake.backends.highlevel.postgres import PostgresHighLevelIndex
        except ImportError:
            raise ConfigError("highlevel.type = \"postgres\" needs psycopg: pip install 'beaconlake[postgres]'") from None
        return PostgresHighLevelIndex(settings.dsn)
    raise TypeError(f"unknown highlevel settings {type(settings).__name__}")


__all__ = ["HighLevelEvent", "HighLevelIndex", "open_highlevel"]
