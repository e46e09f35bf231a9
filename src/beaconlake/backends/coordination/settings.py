"""``[coordination]``: what the nodes of one deployment share to agree (``LOADERS`` picks the backend)."""

from __future__ import annotations

from beaconlake.sections import PositiveFloat, Section


class LocalCoordinationSettings(Section, tag="local", tag_field="type"):
    """One machine: locks are flock files and the run log is SQLite under ``<data_dir>/run/``."""

    # A flock dies with its holder, so this only paces the holder's renewals here.
    lease_secs: PositiveFloat = 15.0
    # How often this node records its heartbeat (role and figures) for the Pipeline view.
    heartbeat_secs: PositiveFloat = 5.0


class PostgresCoordinationSettings(Section, tag="postgres", tag_field="type"):
    """Many machines: leases, checkpoints, heartbeats and the run log in PostgreSQL."""

    url: str = "postgresql://127.0.0.1:5432/beaconlake"
    # A jobs node that stops renewing for this long loses the lease to another node.
    lease_secs: PositiveFloat = 15.0
    heartbeat_secs: PositiveFloat = 5.0


CoordinationSettings = LocalCoordinationSettings | PostgresCoordinationSettings
