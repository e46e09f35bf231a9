"""Iceberg catalogs: ``catalog.type`` in the config picks one from ``LOADERS``; each imports lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

from beaconlake.backends.catalog.base import Capabilities, CatalogBackend, CatalogError
from beaconlake.backends.catalog.settings import CatalogSettings
from beaconlake.backends.loader import Loader, backend_for
from beaconlake.sections import type_of

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

LOADERS: dict[str, Loader] = {
    "sql": ("beaconlake.backends.catalog.sql", "SqlCatalogBackend", None),
    "rest": ("beaconlake.backends.catalog.rest", "RestCatalogBackend", None),
    "glue": ("beaconlake.backends.catalog.glue", "GlueCatalogBackend", "glue"),
}


def open_catalog(settings: CatalogSettings, data_dir: str, warehouse: str) -> Catalog:
    """The catalog the ``[catalog]`` section describes (see ``CatalogBackend.from_settings``)."""
    backend = backend_for("catalog", settings, LOADERS)
    try:
        return backend.from_settings(settings, data_dir, warehouse)
    except Exception as exc:  # pyiceberg raises connection, auth and driver errors of every kind
        where = getattr(settings, "uri", None) or settings.name
        raise CatalogError(f"catalog.type = {type_of(settings)!r}: cannot open {where}: {exc}") from exc


__all__ = ["LOADERS", "Capabilities", "CatalogBackend", "CatalogError", "open_catalog"]
