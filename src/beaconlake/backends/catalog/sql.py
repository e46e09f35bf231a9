"""SQL catalog: table metadata pointers in a database, in the tables of Iceberg's JDBC catalog
(``iceberg_tables``, ``iceberg_namespace_properties``), so Spark, Trino and Flink open the same
tables with ``type=jdbc``. SQLite at ``<data_dir>/catalog.db`` by default; PostgreSQL through
psycopg 3 (``pip install 'beaconlake[postgres]'``) for a deployment of several nodes."""

from __future__ import annotations

from pathlib import Path

from pyiceberg.catalog.sql import SqlCatalog

from beaconlake.backends.catalog.base import Capabilities, CatalogBackend
from beaconlake.backends.catalog.settings import SqlCatalogSettings
from beaconlake.errors import NotInstalled


class SqlCatalogBackend(CatalogBackend):
    capabilities = Capabilities(server_warehouse=False)

    @classmethod
    def from_settings(cls, settings: SqlCatalogSettings, data_dir: str, warehouse: str,
                      properties: dict[str, str]) -> SqlCatalog:
        if not settings.uri:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
        if settings.on_postgres:
            try:
                import psycopg  # noqa: F401  (SQLAlchemy's postgresql+psycopg dialect)
            except ImportError as exc:
                raise NotInstalled("catalog", "sql", exc.name or "psycopg", "postgres") from exc
        # pool_pre_ping: a node's pooled connection outlives a database restart or failover
        props = {"pool_pre_ping": "true", "warehouse": warehouse, **properties}
        return SqlCatalog(settings.name, uri=settings.sqlalchemy_uri(data_dir), **props)
