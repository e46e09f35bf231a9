"""The catalog seam: the SQL catalog on SQLite by default; rest and glue load through pyiceberg."""

from __future__ import annotations

import pyarrow as pa
import pytest

from beaconlake.backends import catalog as catalogs
from beaconlake.backends.catalog import CatalogError, open_catalog
from beaconlake.backends.catalog.settings import (
    GlueCatalogSettings,
    RestCatalogSettings,
    SqlCatalogSettings,
)
from beaconlake.errors import ConfigError


def test_the_default_catalog_is_sqlite_in_the_data_folder(tmp_path):
    cat = open_catalog(SqlCatalogSettings(), str(tmp_path), (tmp_path / "wh").as_uri())
    cat.create_namespace("beaconlake")
    table = cat.create_table("beaconlake.t", schema=pa.schema([("a", pa.int64())]))
    table.append(pa.table({"a": [1, 2]}))
    assert (tmp_path / "catalog.db").is_file()
    assert table.location().startswith((tmp_path / "wh").as_uri())
    # a second process (here: a second catalog object) sees the committed table
    again = open_catalog(SqlCatalogSettings(), str(tmp_path), (tmp_path / "wh").as_uri())
    assert again.load_table("beaconlake.t").scan().to_arrow().column("a").to_pylist() == [1, 2]


def test_an_explicit_sqlalchemy_uri_is_used(tmp_path):
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    open_catalog(SqlCatalogSettings(uri=uri), str(tmp_path), (tmp_path / "wh").as_uri()).create_namespace("x")
    assert (tmp_path / "elsewhere.db").is_file() and not (tmp_path / "catalog.db").exists()


def test_an_unreachable_rest_catalog_is_a_clear_error(tmp_path):
    settings = RestCatalogSettings(uri="http://127.0.0.1:9", properties={"rest.request-timeout": "1"})
    with pytest.raises(CatalogError, match=r"catalog.type = 'rest': cannot open catalog.uri = 'http://127.0.0.1:9'"):
        open_catalog(settings, str(tmp_path), "s3://bucket/wh")


def test_the_glue_catalog_is_built_by_pyiceberg(tmp_path):
    pytest.importorskip("boto3")
    cat = open_catalog(GlueCatalogSettings(region="eu-west-1"), str(tmp_path), "s3://bucket/wh")
    assert type(cat).__name__ == "GlueCatalog" and cat.name == "beaconlake"


def test_a_missing_extra_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(catalogs.LOADERS, "glue", ("beaconlake.backends.catalog.not_installed", "GlueCatalogBackend", "glue"))
    with pytest.raises(ConfigError, match=r"pip install 'beaconlake\[glue\]'"):
        open_catalog(GlueCatalogSettings(), str(tmp_path), "s3://bucket/wh")


def test_rest_settings_reject_a_uri_that_is_not_http():
    import msgspec

    with pytest.raises(msgspec.ValidationError, match="catalog.uri = 'thrift://x'"):
        msgspec.convert({"type": "rest", "uri": "thrift://x"}, RestCatalogSettings)


def test_the_local_file_of_a_catalog_is_its_sqlite_database_only(tmp_path):
    # what the dashboard watches to notice a commit without asking the catalog
    assert SqlCatalogSettings().local_file(str(tmp_path)) == tmp_path / "catalog.db"
    assert SqlCatalogSettings(uri=f"sqlite:///{tmp_path}/x.db").local_file("/elsewhere") == tmp_path / "x.db"
    assert SqlCatalogSettings(uri="postgresql+psycopg2://db/iceberg").local_file(str(tmp_path)) is None
    assert RestCatalogSettings(uri="http://127.0.0.1:9").local_file(str(tmp_path)) is None
    assert GlueCatalogSettings().local_file(str(tmp_path)) is None


def test_the_default_catalog_is_the_file_it_names(tmp_path):
    section = SqlCatalogSettings()
    open_catalog(section, str(tmp_path), (tmp_path / "wh").as_uri()).create_namespace("x")
    assert section.local_file(str(tmp_path)).is_file()


def test_a_warehouse_on_the_storages_s3_gets_its_endpoint_region_keys_and_addressing():
    from beaconlake.backends.catalog import fileio_properties
    from beaconlake.backends.storage.settings import S3StorageSettings

    storage = S3StorageSettings(bucket="lake", endpoint_url="http://minio:9000", region="eu-west-1",
                                access_key_id="AK", secret_access_key="SK", timeout_secs=7)
    props = fileio_properties(SqlCatalogSettings(), "s3://tables/wh", storage)
    assert props == {"s3.endpoint": "http://minio:9000", "s3.region": "eu-west-1", "s3.access-key-id": "AK",
                     "s3.secret-access-key": "SK", "s3.force-virtual-addressing": "false",
                     "s3.connect-timeout": "7", "s3.request-timeout": "7"}
    assert fileio_properties(SqlCatalogSettings(), "file:///data/warehouse", storage) == {}
    # the catalog's own properties win: a warehouse on another endpoint
    own = SqlCatalogSettings(properties={"s3.endpoint": "https://s3.example"})
    assert fileio_properties(own, "s3a://tables/wh", storage)["s3.endpoint"] == "https://s3.example"
    # AWS itself: no endpoint, virtual-hosted buckets, keys from the default chain
    aws = fileio_properties(SqlCatalogSettings(), "s3://tables/wh", S3StorageSettings(bucket="lake"))
    assert aws["s3.force-virtual-addressing"] == "true" and "s3.endpoint" not in aws and "s3.access-key-id" not in aws


def test_catalog_and_storage_urls_are_checked_and_postgres_means_psycopg_3(tmp_path):
    import msgspec

    from beaconlake.backends.storage.settings import S3StorageSettings

    assert SqlCatalogSettings(uri="postgresql://u:p@db/iceberg").sqlalchemy_uri("/d") == \
        "postgresql+psycopg://u:p@db/iceberg"
    assert SqlCatalogSettings(uri="postgres://db/iceberg").sqlalchemy_uri("/d") == "postgresql+psycopg://db/iceberg"
    assert SqlCatalogSettings(uri="postgresql+psycopg://db/x").sqlalchemy_uri("/d") == "postgresql+psycopg://db/x"
    assert SqlCatalogSettings().sqlalchemy_uri(str(tmp_path)) == f"sqlite:///{tmp_path}/catalog.db"
    with pytest.raises(msgspec.ValidationError, match="catalog.uri = 'db.internal:5432': give a SQLAlchemy URL"):
        msgspec.convert({"type": "sql", "uri": "db.internal:5432"}, SqlCatalogSettings)
    with pytest.raises(msgspec.ValidationError, match="storage.endpoint_url = 'minio:9000': an S3 endpoint URL starts"):
        msgspec.convert({"type": "s3", "bucket": "lake", "endpoint_url": "minio:9000"}, S3StorageSettings)
