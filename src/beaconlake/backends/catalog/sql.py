"""SQL catalog (the embedded default): table metadata pointers in SQLite at ``<data_dir>/catalog.db``."""

from __future__ import annotations

from pathlib import Path

from pyiceberg.catalog.sql import SqlCatalog

from beaconlake.backends.catalog.base import Capabilities, CatalogBackend
from beaconlake.backends.catalog.settings import SQLITE, SqlCatalogSettings


class SqlCatalogBackend(CatalogBackend):
    capabilities = Capabilities(server_warehouse=False)

    @classmethod
    def from_settings(cls, settings: SqlCatalogSettings, data_dir: str, warehouse: str) -> SqlCatalog:
        uri = settings.uri
        if not uri:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
            uri = f"{SQLITE}{settings.local_file(data_dir)}"
        return SqlCatalog(settings.name, uri=uri, warehouse=warehouse)
