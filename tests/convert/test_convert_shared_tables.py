"""Tables that several nodes share: the raw lake and the Iceberg warehouse on S3 (moto's server),
the SQL catalog on PostgreSQL (Debian's). One node converts; another, with its own empty data
folder, opens the tables and reads the very same rows. A store or catalog that cannot be reached
is one line naming the setting and exit 2, from `convert`, `analyze` and the scheduler's run record."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest
from rawlake import MIN, event, ms, write_raw
from support import free_port, moto_s3

TENANT = {"id": "shop", "write_key": "w" * 20, "read_key": "r" * 20}
KEYS = {"access_key_id": "testing", "secret_access_key": "moto-secret-do-not-print"}
ROWS_SQL = "SELECT event_id, anonymous_id, session_id, event_ts FROM events ORDER BY event_id"


@pytest.fixture(scope="module")
def s3():
    import boto3

    with moto_s3() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        for bucket in ("lake-bucket", "warehouse-bucket"):
            client.create_bucket(Bucket=bucket)
        yield endpoint, client


def pg_url() -> str:
    """A fresh database on the test PostgreSQL, as a bare postgresql:// URL (read as psycopg 3)."""
    from realtime.servers import fresh_postgres_db

    dsn = dict(part.split("=", 1) for part in fresh_postgres_db().split())
    return f"postgresql://{dsn['user']}@{dsn['host']}:{dsn['port']}/{dsn['dbname']}"


def node_config(folder, endpoint: str, catalog: dict, **sections) -> str:
    """A node's config file: its own data folder, the shared lake, warehouse and catalog."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = {"data_dir": str(folder / "data"),
           "storage": {"type": "s3", "bucket": "lake-bucket", "prefix": "lake", "endpoint_url": endpoint, **KEYS},
           "convert": {"warehouse": "s3://warehouse-bucket/tables"}, "catalog": catalog,
           "engine": {"type": "duckdb", "memory_limit_mb": 512}, **sections}
    lines = []
    for key, value in raw.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in value.items() if not isinstance(v, dict)]
            lines += [f"{k} = {{ {', '.join(f'{json.dumps(a)} = {json.dumps(b)}' for a, b in v.items())} }}"
                      for k, v in value.items() if isinstance(v, dict)]
        else:
            lines.insert(0, f"{key} = {json.dumps(value)}")
    lines += ["[[tenants]]"] + [f"{k} = {json.dumps(v)}" for k, v in TENANT.items()]
    path = folder / "beaconlake.toml"
    path.write_text("\n".join(lines) + "\n")
    tomllib.loads(path.read_text())  # written right
    return str(path)


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beaconlake.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=240)


def put_raw(client, tmp_path, events, segment: str = "seg-0001") -> None:
    staging = tmp_path / "raw-staging" / segment
    for path in write_raw(staging, events, segment):
        client.upload_file(str(path), "lake-bucket", "lake/" + path.relative_to(staging).as_posix())


def test_a_second_node_reads_the_tables_one_node_converted_on_s3_with_a_postgres_catalog(tmp_path, s3):
    endpoint, client = s3
    t = ms("2026-03-10T23:50:00")
    put_raw(client, tmp_path, [event("a", t), event("a", t + 20 * MIN, "click", "low"), event("b", t),
                               event("c", t + 40 * MIN)])
    catalog = {"type": "sql", "uri": pg_url()}
    one = node_config(tmp_path / "node1", endpoint, catalog)
    two = node_config(tmp_path / "node2", endpoint, catalog)

    done = cli("convert", "--config", one, "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "converted 3 new raw file(s): 4 events" in done.stdout  # a, b on day 10; c on day 11; the click
    # the table files are in the bucket, not in node 1's folder
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="warehouse-bucket").get("Contents", [])]
    assert any(k.endswith(".parquet") and "/events/data/" in k for k in keys)
    assert any(k.endswith(".metadata.json") for k in keys)
    assert not list((tmp_path / "node1" / "data").rglob("*.parquet"))

    first = cli("query", "--config", one, "--format", "json", ROWS_SQL, cwd=tmp_path)
    second = cli("query", "--config", two, "--format", "json", ROWS_SQL, cwd=tmp_path)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    rows = json.loads(second.stdout)
    assert len(rows) == 4 and json.loads(first.stdout) == rows
    assert not (tmp_path / "node2" / "data" / "catalog.db").exists()  # the catalog is PostgreSQL's

    # node 2 converts what arrives next, on the tables node 1 made: nothing twice
    put_raw(client, tmp_path, [event("d", t + 50 * MIN)], "seg-0002")
    done = cli("convert", "--config", two, "--no-progress", cwd=tmp_path)
    assert done.returncode == 0 and "converted 1 new raw file(s)" in done.stdout, done.stderr
    rows = json.loads(cli("query", "--config", one, "--format", "json", ROWS_SQL, cwd=tmp_path).stdout)
    assert sorted(r["anonymous_id"] for r in rows) == ["a", "a", "b", "c", "d"]


def test_the_postgres_catalog_has_the_tables_of_icebergs_jdbc_catalog(tmp_path):
    """Spark, Trino and Flink open these tables with Iceberg's JdbcCatalog, which reads these
    tables and columns (its V1 schema; V0 lacks iceberg_type and works the same for tables)."""
    import psycopg
    import pyarrow as pa

    from beaconlake.backends.catalog import open_catalog
    from beaconlake.backends.catalog.settings import SqlCatalogSettings

    url = pg_url()
    cat = open_catalog(SqlCatalogSettings(uri=url), str(tmp_path), (tmp_path / "wh").as_uri())
    cat.create_namespace("beaconlake")
    cat.create_table("beaconlake.t", schema=pa.schema([("a", pa.int64())]))
    with psycopg.connect(url) as db:
        columns = db.execute(
            "SELECT table_name, column_name, data_type, character_maximum_length FROM information_schema.columns "
            "WHERE table_name IN ('iceberg_tables', 'iceberg_namespace_properties') ORDER BY 1, ordinal_position"
        ).fetchall()
        keys = db.execute(
            "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc JOIN "
            "information_schema.key_column_usage kcu USING (constraint_schema, constraint_name, table_name) "
            "WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_name LIKE 'iceberg%' "
            "ORDER BY 1, kcu.ordinal_position").fetchall()
        row = db.execute("SELECT catalog_name, table_namespace, table_name, metadata_location, iceberg_type "
                         "FROM iceberg_tables").fetchone()
        props = db.execute("SELECT namespace, property_key, property_value FROM iceberg_namespace_properties").fetchall()
    varchar = "character varying"
    assert columns == [
        ("iceberg_namespace_properties", "catalog_name", varchar, 255),
        ("iceberg_namespace_properties", "namespace", varchar, 255),
        ("iceberg_namespace_properties", "property_key", varchar, 255),
        ("iceberg_namespace_properties", "property_value", varchar, 1000),
        ("iceberg_tables", "catalog_name", varchar, 255),
        ("iceberg_tables", "table_namespace", varchar, 255),
        ("iceberg_tables", "table_name", varchar, 255),
        ("iceberg_tables", "metadata_location", varchar, 1000),
        ("iceberg_tables", "previous_metadata_location", varchar, 1000),
        ("iceberg_tables", "iceberg_type", varchar, 5),
    ]
    assert keys == [("iceberg_namespace_properties", "catalog_name"), ("iceberg_namespace_properties", "namespace"),
                    ("iceberg_namespace_properties", "property_key"), ("iceberg_tables", "catalog_name"),
                    ("iceberg_tables", "table_namespace"), ("iceberg_tables", "table_name")]
    # rows as the JdbcCatalog writes them: namespace levels joined by dots, "exists" marks a namespace
    assert row[:3] == ("beaconlake", "beaconlake", "t") and row[3].endswith(".metadata.json") and row[4] == "TABLE"
    assert ("beaconlake", "exists", "true") in props


def test_an_unreachable_warehouse_store_is_exit_2_naming_the_setting(tmp_path, s3):
    endpoint, _client = s3
    closed = f"http://127.0.0.1:{free_port()}"
    # the lake is fine; the warehouse's own endpoint (catalog.properties, which win) is not
    catalog = {"type": "sql", "properties": {"s3.endpoint": closed}}
    config = node_config(tmp_path / "n", endpoint, catalog)
    for command in (["convert", "--no-progress"], ["analyze"]):
        done = cli(*command, "--config", config, cwd=tmp_path)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        assert (f"beaconlake: convert.warehouse = 's3://warehouse-bucket/tables': cannot reach the warehouse's store "
                f"at catalog.properties['s3.endpoint'] = '{closed}'") in done.stderr, done.stderr
    # the storage's endpoint (no override) is named as such; a missing bucket says so
    config = node_config(tmp_path / "m", endpoint, {"type": "sql"}, convert={"warehouse": "s3://no-such-bucket/t"})
    done = cli("convert", "--no-progress", "--config", config, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"at storage.endpoint_url = '{endpoint}': s3://no-such-bucket does not exist" in done.stderr, done.stderr


def test_an_unreachable_catalog_database_is_exit_2_without_its_password(tmp_path, s3):
    endpoint, _client = s3
    port = free_port()
    catalog = {"type": "sql", "uri": f"postgresql+psycopg://bl:hunter2-secret@127.0.0.1:{port}/iceberg"}
    config = node_config(tmp_path / "n", endpoint, catalog)
    done = cli("convert", "--no-progress", "--config", config, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert (f"beaconlake: catalog.type = 'sql': cannot open catalog.uri = "
            f"'postgresql+psycopg://bl:***@127.0.0.1:{port}/iceberg'") in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


def test_the_schedulers_run_record_names_the_unreachable_warehouse(tmp_path, s3):
    from beaconlake import config
    from beaconlake.schedule.run import run_once

    endpoint, _client = s3
    closed = f"http://127.0.0.1:{free_port()}"
    settings = config.load(node_config(tmp_path / "n", endpoint, {"type": "sql", "properties": {"s3.endpoint": closed}}),
                           environ={})
    record = run_once(settings)
    assert record["status"] == "failed" and record["stage"] == "convert"
    assert record["error"].startswith("CatalogError: convert.warehouse = 's3://warehouse-bucket/tables': cannot reach "
                                      f"the warehouse's store at catalog.properties['s3.endpoint'] = '{closed}'")


def test_a_warehouse_on_azure_blob_storage_takes_the_storage_account(tmp_path, scratch):
    """The same with [storage] on Azure (Azurite): an abfs:// warehouse gets the account, key and
    endpoint of the storage section; a second store on the catalog reads the rows back."""
    from azure.storage.blob import ContainerClient
    from convert_lake import Lake
    from support import AZURITE_ACCOUNT, AZURITE_KEY, azurite

    from beaconlake import config
    from beaconlake.backends.catalog import CatalogError
    from beaconlake.backends.storage import open_storage
    from beaconlake.convert.run import open_store

    with azurite() as endpoint:
        key = {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
        for container in ("lake", "tables"):
            ContainerClient(endpoint, container, credential=key).create_container()
        lake = Lake(tmp_path / "data", "duckdb", scratch)
        raw = {"data_dir": str(tmp_path / "data"), "tenants": [TENANT], "convert": {"warehouse": "abfs://tables/wh"},
               "storage": {"type": "azure", "container": "lake", "endpoint_url": endpoint, **key}}
        lake.settings = config.parse(raw, tmp_path, environ={})
        lake.sections = (lake.settings.convert, *lake.sections[1:])
        put = open_storage(lake.settings.storage)
        staging = tmp_path / "raw"
        for path in write_raw(staging, [event("a", ms("2026-03-10T10:00:00")), event("b", ms("2026-03-10T11:00:00"))]):
            put.put(path.relative_to(staging).as_posix(), path.read_bytes())
        assert lake.convert().events == 2
        assert open_store(lake.settings, lake.sections).table("events").location().startswith("abfs://tables/wh/")
        rows = open_store(lake.settings, lake.sections).table("events").scan().to_arrow()
        assert sorted(rows.column("anonymous_id").to_pylist()) == ["a", "b"]
        raw["convert"] = {"warehouse": "abfs://no-such-container/wh"}
        with pytest.raises(CatalogError, match=r"abfs://no-such-container does not exist"):
            open_store(config.parse(raw, tmp_path, environ={}))
