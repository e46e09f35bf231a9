"""Coordination backends: ``coordination.type`` in the config picks one from ``LOADERS``; each imports lazily."""

from __future__ import annotations

from pathlib import Path

from beaconlake.backends.coordination.base import (
    JOBS_LEASE,
    RUN_LEASE,
    Capabilities,
    Coordination,
    Lease,
    LeaseLost,
    RunLog,
)
from beaconlake.backends.coordination.settings import CoordinationSettings
from beaconlake.backends.loader import Loader, backend_for

LOADERS: dict[str, Loader] = {
    "local": ("beaconlake.backends.coordination.local", "LocalCoordination", None),
    "postgres": ("beaconlake.backends.coordination.postgres", "PostgresCoordination", "postgres"),
}


def open_coordination(settings: CoordinationSettings, *, run_dir: Path, node: str) -> Coordination:
    """This process's handle on the ``[coordination]`` section's service, as node ``node``."""
    return backend_for("coordination", settings, LOADERS).from_settings(settings, run_dir=Path(run_dir), node=node)


__all__ = ["JOBS_LEASE", "LOADERS", "RUN_LEASE", "Capabilities", "Coordination", "Lease", "LeaseLost", "RunLog", "open_coordination"]
