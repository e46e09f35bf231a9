"""Iceberg catalogs: ``catalog.type`` in the config picks one from ``LOADERS``; each imports lazily.

``open_catalog`` is the one door: it gives the catalog the FileIO properties of the warehouse's
store (derived from ``[storage]`` when the warehouse is on the same kind of store, overridden by
``catalog.properties``), and, given the storage settings, checks that the warehouse is reachable,
so a wrong endpoint, key or bucket is one error naming the setting (exit 2 from the command
line) instead of a traceback from deep inside a commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from beaconlake.backends.catalog.base import Capabilities, CatalogBackend, CatalogError
from beaconlake.backends.catalog.settings import CatalogSettings
from beaconlake.backends.loader import Loader, backend_for
from beaconlake.errors import BeaconlakeError
from beaconlake.sections import redact_text, type_of

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog


class StorageSettings(Protocol):
    """What the catalog needs of a ``[storage]`` section (backends/storage/settings.py)."""

    def fileio_properties(self, uri: str) -> dict[str, str]:
        """pyiceberg FileIO properties that reach the store, when ``uri`` is on it; else {}."""

LOADERS: dict[str, Loader] = {
    "sql": ("beaconlake.backends.catalog.sql", "SqlCatalogBackend", None),
    "rest": ("beaconlake.backends.catalog.rest", "RestCatalogBackend", None),
    "glue": ("beaconlake.backends.catalog.glue", "GlueCatalogBackend", "glue"),
}


def fileio_properties(settings: CatalogSettings, warehouse: str, storage: StorageSettings | None) -> dict[str, str]:
    """pyiceberg properties for the catalog: the storage's for a warehouse on its kind of store,
    then ``catalog.properties`` (which win)."""
    derived = storage.fileio_properties(warehouse) if storage is not None else {}
    return {**derived, **getattr(settings, "properties", {})}


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return redact_text(lines[0] if lines else type(exc).__name__)[:400]


def open_catalog(settings: CatalogSettings, data_dir: str, warehouse: str,
                 storage: StorageSettings | None = None) -> Catalog:
    """The catalog the ``[catalog]`` section describes (see ``CatalogBackend.from_settings``).
    With ``storage`` (the ``[storage]`` section), the warehouse's store is also checked."""
    backend = backend_for("catalog", settings, LOADERS)
    properties = fileio_properties(settings, warehouse, storage)
    try:
        catalog = backend.from_settings(settings, data_dir, warehouse, properties)
    except BeaconlakeError:
        raise
    except Exception as exc:  # pyiceberg raises connection, auth and driver errors of every kind
        where = redact_text(getattr(settings, "uri", None) or settings.name)
        setting = "catalog.uri" if getattr(settings, "uri", None) else "catalog.name"
        raise CatalogError(f"catalog.type = {type_of(settings)!r}: cannot open {setting} = {where!r}: "
                           f"{_first_line(exc)}") from exc
    if storage is not None and not backend.capabilities.server_warehouse:
        check_warehouse(warehouse, properties, getattr(settings, "properties", {}))
    return catalog


def check_warehouse(warehouse: str, properties: dict[str, str], own: dict[str, str] | None = None) -> None:
    """Raise ``CatalogError`` naming the settings when the warehouse's store cannot be reached:
    its bucket or container is looked up (one request), as every table read and commit would.
    ``own``: the catalog section's own properties (to say which setting gave the endpoint)."""
    from pyiceberg.io.pyarrow import PyArrowFileIO

    scheme, _, rest = warehouse.partition("://")
    if not rest or scheme == "file":
        return  # a local folder: created on first write
    root = f"{scheme}://{rest.split('/', 1)[0]}"
    try:
        found = PyArrowFileIO(properties).new_input(root).exists()
    except Exception as exc:  # pyarrow raises OSError, ValueError... for every kind of failure
        raise CatalogError(_unreachable(warehouse, properties, own or {}, _first_line(exc))) from exc
    if not found:
        raise CatalogError(_unreachable(warehouse, properties, own or {}, f"{root} does not exist; create it"))


def _unreachable(warehouse: str, properties: dict[str, str], own: dict[str, str], why: str) -> str:
    key = next((k for k in ("s3.endpoint", "adls.blob-storage-authority") if k in properties), None)
    if key is None:
        where, check = "", "the region, the credentials"
    elif key in own:
        where, check = f" at catalog.properties[{key!r}] = {properties[key]!r}", "catalog.properties"
    elif key == "s3.endpoint":
        where, check = f" at storage.endpoint_url = {properties[key]!r}", "storage.endpoint_url, the credentials"
    else:
        where, check = f" at the Blob endpoint {properties[key]!r} (storage.endpoint_url)", \
            "storage.endpoint_url, the account key or SAS token"
    return (f"convert.warehouse = {warehouse!r}: cannot reach the warehouse's store{where}: {why}; "
            f"check {check} and that the bucket or container exists")


__all__ = ["LOADERS", "Capabilities", "CatalogBackend", "CatalogError", "check_warehouse", "fileio_properties",
           "open_catalog"]
