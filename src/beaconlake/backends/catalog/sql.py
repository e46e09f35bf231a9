"""SQL catalog (the embedded default): table metadata pointers in SQLite at ``<data_dir>/catalog.db``."""

from __future__ import annotations

from pathlib import Path

from pyiceberg.catalog.sql import SqlCatalog

from beaconlake.convert.settings import SqlCatalogSettings


def open_catalog(settings: SqlCatalogSettings, data_dir: str, warehouse: str) -> SqlCatalog:
    uri = settings.uri
    if not uri:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{Path(data_dir) / 'catalog.db'}"
    return SqlCatalog(settings.name, uri=uri, warehouse=warehouse)
