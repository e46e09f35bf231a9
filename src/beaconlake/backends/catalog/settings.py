"""``[catalog]``: where the Iceberg tables are registered. ``type`` picks the backend (``LOADERS``).

Every kind takes ``properties``: pyiceberg catalog and FileIO properties (``s3.endpoint``,
``s3.region``, ``s3.access-key-id``, ``adls.account-name``...). They override what beaconlake
derives from ``[storage]`` for a warehouse on the same store (backends/catalog/__init__.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from beaconlake.sections import Section

SQLITE = "sqlite:///"
# SQLAlchemy picks psycopg2 for a bare postgresql:// URL; beaconlake ships psycopg 3 (the
# postgres extra), so such URLs are read as postgresql+psycopg://.
_BARE_POSTGRES = re.compile(r"^postgres(?:ql)?://")
POSTGRES_DRIVER = "postgresql+psycopg://"


class SqlCatalogSettings(Section, tag="sql", tag_field="type"):
    """An Iceberg SQL catalog (the tables of Iceberg's JDBC catalog): in SQLite at
    ``<data_dir>/catalog.db`` by default, or in PostgreSQL for a deployment of several nodes."""

    # SQLAlchemy URL; "" = sqlite:///<data_dir>/catalog.db. For PostgreSQL (pip install
    # 'beaconlake[postgres]'): postgresql+psycopg://user:password@host:5432/db (postgresql:// works too).
    uri: str = ""
    name: str = "beaconlake"
    properties: dict[str, str] = {}

    def __post_init__(self) -> None:
        if self.uri and "://" not in self.uri:
            raise ValueError(f"catalog.uri = {self.uri!r}: give a SQLAlchemy URL, e.g. "
                             "postgresql+psycopg://user:password@host:5432/iceberg or sqlite:////path/catalog.db")

    def sqlalchemy_uri(self, data_dir: str) -> str:
        """The URL the catalog is opened with: the default SQLite file, or ``uri`` with
        PostgreSQL's driver made psycopg 3."""
        if not self.uri:
            return f"{SQLITE}{self.local_file(data_dir)}"
        return _BARE_POSTGRES.sub(POSTGRES_DRIVER, self.uri)

    @property
    def on_postgres(self) -> bool:
        return self.uri.startswith(("postgres://", "postgresql"))

    def local_file(self, data_dir: str) -> Path | None:
        """The SQLite file that holds the catalog (every commit changes it), or None when the
        catalog is a database server."""
        if not self.uri:
            return Path(data_dir) / "catalog.db"
        return Path(self.uri[len(SQLITE):]) if self.uri.startswith(SQLITE) else None


class RestCatalogSettings(Section, tag="rest", tag_field="type"):
    """An Iceberg REST catalog (Polaris, Nessie, Lakekeeper, Tabular, S3 Tables...)."""

    uri: str
    name: str = "beaconlake"
    warehouse: str | None = None
    credential: str | None = None
    token: str | None = None
    # Any other pyiceberg catalog property, e.g. {"s3.endpoint" = "http://minio:9000"}.
    properties: dict[str, str] = {}

    def __post_init__(self) -> None:
        if not self.uri.startswith(("http://", "https://")):
            raise ValueError(f"catalog.uri = {self.uri!r}: a REST catalog URI starts with http:// or https://")

    def local_file(self, data_dir: str) -> Path | None:
        return None


class GlueCatalogSettings(Section, tag="glue", tag_field="type"):
    """AWS Glue Data Catalog (``pip install 'beaconlake[glue]'``); tables then read from Athena too."""

    name: str = "beaconlake"
    region: str | None = None
    profile: str | None = None
    properties: dict[str, str] = {}

    def local_file(self, data_dir: str) -> Path | None:
        return None


CatalogSettings = SqlCatalogSettings | RestCatalogSettings | GlueCatalogSettings
