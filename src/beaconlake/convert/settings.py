"""Config section of the convert stage: ``[convert]`` (``[engine]`` and ``[catalog]`` are the
backends' own: ``beaconlake.backends.engine.settings``, ``beaconlake.backends.catalog.settings``).

Limits are checked in ``__post_init__`` rather than with ``msgspec.Meta`` so that a bad value
is reported with the key, the value and the limit ("convert.session_gap_mins = 0: ..."); msgspec
adds where in the document it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from beaconlake.sections import Section, check_range


class ConvertSettings(Section):
    """How raw events become the ``events``, ``sessions``, ``pageviews`` and ``high_level_events`` tables."""

    # A session ends after this much inactivity (an event exactly this long after the previous one
    # still belongs to the session; the tracker's rolling session uses the same rule).
    session_gap_mins: int = 30
    # ... or at this length: longer activity is cut into pieces of this length, flagged `split`.
    max_session_hours: int = 24
    # Raw files for days older than this (behind the newest event in the lake) are still merged,
    # but reported as arriving after the promised lateness, since they change days readers saw as final.
    late_arrival_hours: int = 72
    # Files written per table partition (tenant, day) roll over at this size.
    target_file_mb: int = 256
    # A day's events are written in buckets of people (a hash of anonymous_id), one file each, about
    # this much raw Parquet per bucket (a power of two of them, 1 to 1024): an incremental run rewrites
    # only the buckets of people whose converted rows change. Smaller: cheaper such runs, more files.
    event_bucket_raw_kb: int = 1024
    # A run converts the raw lake in batches of consecutive days of about this much raw Parquet
    # (DuckDB holds about 400 bytes per event of a batch: 512 MB of raw files is about 4 GB).
    max_batch_mb: int = 512
    # Iceberg namespace of the tables, and where their files go: "" = <data_dir>/warehouse, a path
    # (relative: under data_dir) or a URI (s3://bucket/prefix).
    namespace: str = "beaconlake"
    warehouse: str = ""
    # Warehouse upkeep, done by a convert run when maintenance_interval_hours have passed since the
    # last (0: every run): snapshots older than snapshot_retention_hours are expired (0: keep only
    # the current one) with the files only they needed, and files no snapshot references (a killed
    # run's) are removed once older than orphan_min_age_hours, the margin that protects a commit
    # in flight. Off (maintenance_enabled = false) when another tool maintains the tables.
    maintenance_enabled: bool = True
    maintenance_interval_hours: float = 1.0
    snapshot_retention_hours: float = 6.0
    orphan_min_age_hours: float = 24.0

    def __post_init__(self) -> None:
        check_range("convert.session_gap_mins", self.session_gap_mins, 1, 24 * 60, "minutes")
        check_range("convert.max_session_hours", self.max_session_hours, 1, 7 * 24, "hours")
        check_range("convert.late_arrival_hours", self.late_arrival_hours, 0, 365 * 24, "hours")
        check_range("convert.target_file_mb", self.target_file_mb, 1, 4096, "MB")
        check_range("convert.max_batch_mb", self.max_batch_mb, 1, 1024 * 1024, "MB")
        check_range("convert.event_bucket_raw_kb", self.event_bucket_raw_kb, 16, 1024 * 1024, "KB")
        check_range("convert.maintenance_interval_hours", self.maintenance_interval_hours, 0, 30 * 24, "hours")
        check_range("convert.snapshot_retention_hours", self.snapshot_retention_hours, 0, 365 * 24, "hours")
        # below an hour, a slow commit's freshly written files could be taken for a dead run's
        check_range("convert.orphan_min_age_hours", self.orphan_min_age_hours, 1, 365 * 24, "hours")
        if self.session_gap_mins >= self.max_session_hours * 60:
            raise ValueError(
                f"convert.session_gap_mins = {self.session_gap_mins} must be shorter than "
                f"convert.max_session_hours = {self.max_session_hours} ({self.max_session_hours * 60} minutes)"
            )
        if not self.namespace.replace("_", "").isalnum() or not self.namespace.islower():
            raise ValueError(f"convert.namespace = {self.namespace!r}: use lower-case letters, digits and '_'")

    def warehouse_uri(self, data_dir: str) -> str:
        """Where Iceberg table files go: a URI (file://, s3://) or an absolute local path."""
        if not self.warehouse:
            return (Path(data_dir) / "warehouse").as_uri()
        if "://" in self.warehouse:
            return self.warehouse
        path = Path(self.warehouse).expanduser()
        return (path if path.is_absolute() else Path(data_dir) / path).resolve().as_uri()


def sections_of(settings: Any) -> tuple[ConvertSettings, Any, Any]:
    """The convert, engine and catalog sections of ``beaconlake.config.Settings``."""
    return settings.convert, settings.engine, settings.catalog
