"""``[coordination]``: what the nodes of one deployment share to agree (``LOADERS`` picks the backend)."""

from __future__ import annotations

from beaconlake.sections import PositiveFloat, Section, check_range


def _check_timings(lease_secs: float, heartbeat_secs: float) -> None:
    # Under a second a busy node loses its lease to a GC pause; past an hour a dead one is not replaced.
    check_range("coordination.lease_secs", lease_secs, 1, 3600, "seconds")
    check_range("coordination.heartbeat_secs", heartbeat_secs, 0.1, 3600, "seconds")


class LocalCoordinationSettings(Section, tag="local", tag_field="type"):
    """One machine: locks are flock files and the run log is SQLite under ``<data_dir>/run/``."""

    # A flock dies with its holder, so this only paces the holder's renewals here.
    lease_secs: PositiveFloat = 15.0
    # How often this node records its heartbeat (role and figures) for the Pipeline view.
    heartbeat_secs: PositiveFloat = 5.0

    def __post_init__(self) -> None:
        _check_timings(self.lease_secs, self.heartbeat_secs)


class PostgresCoordinationSettings(Section, tag="postgres", tag_field="type"):
    """Many machines: leases, checkpoints, heartbeats and the run log in PostgreSQL."""

    url: str = "postgresql://127.0.0.1:5432/beaconlake"
    # A jobs node that stops renewing for this long loses the lease to another node.
    lease_secs: PositiveFloat = 15.0
    heartbeat_secs: PositiveFloat = 5.0

    def __post_init__(self) -> None:
        # a libpq URL or key=value string: anything else would fail only when a node first connects
        if not (self.url.startswith(("postgresql://", "postgres://")) or "=" in self.url):
            raise ValueError(f"coordination.url = {self.url!r}: not a PostgreSQL connection string; write "
                             "postgresql://user@host:5432/dbname (or host=... dbname=...)")
        _check_timings(self.lease_secs, self.heartbeat_secs)


CoordinationSettings = LocalCoordinationSettings | PostgresCoordinationSettings
