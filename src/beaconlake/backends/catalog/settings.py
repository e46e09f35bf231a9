"""``[catalog]``: where the Iceberg tables are registered. ``type`` picks the backend (``LOADERS``)."""

from __future__ import annotations

from pathlib import Path

from beaconlake.sections import Section

SQLITE = "sqlite:///"


class SqlCatalogSettings(Section, tag="sql", tag_field="type"):
    """The embedded default: an Iceberg SQL catalog in SQLite at ``<data_dir>/catalog.db``."""

    # SQLAlchemy URL; "" = sqlite:///<data_dir>/catalog.db. PostgreSQL works too (pip install psycopg2).
    uri: str = ""
    name: str = "beaconlake"

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
