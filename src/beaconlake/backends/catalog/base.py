"""The catalog seam: where Iceberg tables are registered (their schema, snapshots, files).

Every backend returns a pyiceberg ``Catalog``; the convert stage and ``beaconlake query`` only
use that interface, so any Iceberg reader (DuckDB, Spark, Trino, Athena) pointed at the same
catalog sees the same tables.
"""

from __future__ import annotations

from typing import Protocol

from pyiceberg.catalog import Catalog

from beaconlake.errors import BeaconlakeError


class CatalogError(BeaconlakeError):
    """The catalog could not be opened or reached."""


class CatalogLoader(Protocol):
    def __call__(self, settings, data_dir: str, warehouse: str) -> Catalog:
        """Open the catalog described by ``settings``; ``warehouse`` is where new tables' files go."""


__all__ = ["Catalog", "CatalogError", "CatalogLoader"]
