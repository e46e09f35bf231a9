"""``[profiles]``: the profile store. ``type`` picks the backend (``LOADERS``).

Limits are checked in ``__post_init__`` so a bad value is reported with the key and the value.
"""

from __future__ import annotations

from pathlib import Path

from beaconlake.sections import Section, check_range, resolve


class SqliteProfilesSettings(Section, tag="sqlite", tag_field="type"):
    """The embedded default: one SQLite file (WAL), FTS5 over interests and segment labels."""

    path: str = ""  # "" = <data_dir>/profiles.db; relative paths resolve against the config file's folder

    def resolve_paths(self, base_dir: str, data_dir: str) -> None:
        self.path = resolve(base_dir, self.path or str(Path(data_dir) / "profiles.db"))


class PostgresProfilesSettings(Section, tag="postgres", tag_field="type"):
    """PostgreSQL (``pip install 'beaconlake[postgres]'``): JSONB documents, GIN and B-tree indexes."""

    dsn: str
    # A read or small write the server has not answered within this is given up (503 to the
    # reader); an analyze run's upserts, erasures' deletes and the purge are not bounded.
    timeout_secs: float = 30.0

    def __post_init__(self) -> None:
        if not self.dsn:
            raise ValueError("profiles.dsn = '': give a libpq connection string, e.g. 'host=db dbname=beaconlake'")
        check_range("profiles.timeout_secs", self.timeout_secs, 0.1, 3600, "seconds")


ProfilesSettings = SqliteProfilesSettings | PostgresProfilesSettings
