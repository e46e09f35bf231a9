"""Profile store backends: ``profiles.type`` in the config picks one from ``LOADERS``; each imports lazily."""

from __future__ import annotations

from beaconlake.backends.loader import Loader, backend_for
from beaconlake.backends.profiles.base import TRAITS, Capabilities, ProfileStore, Row, Search
from beaconlake.backends.profiles.settings import ProfilesSettings

LOADERS: dict[str, Loader] = {
    "sqlite": ("beaconlake.backends.profiles.sqlite", "SqliteProfileStore", None),
    "postgres": ("beaconlake.backends.profiles.postgres", "PostgresProfileStore", "postgres"),
}


def open_profiles(settings: ProfilesSettings) -> ProfileStore:
    """The store the ``[profiles]`` section (paths resolved) describes."""
    return backend_for("profiles", settings, LOADERS).from_settings(settings)


__all__ = ["LOADERS", "TRAITS", "Capabilities", "ProfileStore", "Row", "Search", "open_profiles"]
