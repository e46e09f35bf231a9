"""Profile store backends: ``profiles.type`` in the config picks one; backends import lazily."""

from __future__ import annotations

from beaconlake.analyze.settings import PostgresProfilesSettings, SqliteProfilesSettings
from beaconlake.backends.profiles.base import TRAITS, ProfileStore, Row, Search
from beaconlake.errors import ConfigError


def open_profiles(settings) -> ProfileStore:
    """The store of ``settings.profiles`` (``settings``: ``beaconlake.config.Settings``)."""
    section = settings.profiles
    if isinstance(section, SqliteProfilesSettings):
        from beaconlake.backends.profiles.sqlite import SqliteProfileStore

        return SqliteProfileStore(section.resolved_path(settings.data_dir, settings.base_dir))
    if isinstance(section, PostgresProfilesSettings):
        try:
            from beaconlake.backends.profiles.postgres import PostgresProfileStore
        except ImportError:
            raise ConfigError("profiles.type = \"postgres\" needs psycopg: pip install 'beaconlake[postgres]'") from None
        return PostgresProfileStore(section.dsn)
    raise TypeError(f"unknown profiles settings {type(section).__name__}")


__all__ = ["TRAITS", "ProfileStore", "Row", "Search", "open_profiles"]
