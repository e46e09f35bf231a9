"""The catalog seam: where Iceberg tables are registered (their schema, snapshots, files).

Every backend opens a pyiceberg ``Catalog``; the convert stage and ``beaconlake query`` only
use that interface, so any Iceberg reader (DuckDB, Spark, Trino, Athena) pointed at the same
catalog sees the same tables. A backend here is how beaconlake opens one kind of catalog from
its ``[catalog]`` section, and what that kind can do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from beaconlake.errors import BeaconlakeError

if TYPE_CHECKING:  # pyiceberg is imported by the backend modules, when a catalog is opened
    from pyiceberg.catalog import Catalog


class CatalogError(BeaconlakeError):
    """The catalog, or the warehouse storage its tables live in, could not be opened or reached."""


@dataclass(frozen=True)
class Capabilities:
    """What a kind of catalog does, asked by callers instead of its class."""

    # The catalog's server decides where a new table's files go; the warehouse beaconlake
    # passes (``convert.warehouse``) is only a fallback it may ignore.
    server_warehouse: bool


class CatalogBackend(ABC):
    capabilities: ClassVar[Capabilities]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Any, data_dir: str, warehouse: str, properties: dict[str, str]) -> Catalog:
        """Open the catalog its ``[catalog]`` section describes; ``warehouse`` is where new
        tables' files go (a URI), ``data_dir`` holds an embedded catalog, ``properties`` are
        pyiceberg catalog/FileIO properties (the storage's, then the section's own ``properties``)."""


__all__ = ["Capabilities", "CatalogBackend", "CatalogError"]
