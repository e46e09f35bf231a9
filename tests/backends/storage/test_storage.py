"""One behaviour suite for every storage backend: the local folder, S3 (moto's server mode) and
Azure Blob Storage (the Azurite emulator): objects, listings with sizes, and the doors readers
scan through (a pyarrow filesystem, paths an engine reads)."""

import io
import time

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from support import AZURITE_ACCOUNT, AZURITE_KEY, azurite, moto_s3

from beaconlake.backends.storage import open_storage
from beaconlake.config import AzureStorageSettings, LocalStorageSettings, S3StorageSettings
from beaconlake.errors import ConfigError, StorageError

BACKENDS = ["local", "s3", "azure"]


@pytest.fixture(scope="module")
def s3_server():
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def azure_server():
    with azurite() as endpoint:
        yield endpoint


def s3_settings(endpoint: str, bucket: str) -> S3StorageSettings:
    return S3StorageSettings(
        bucket=bucket, prefix="lake", endpoint_url=endpoint, region="us-east-1",
        access_key_id="testing", secret_access_key="testing",
    )


def azure_settings(endpoint: str, container: str) -> AzureStorageSettings:
    return AzureStorageSettings(account_name=AZURITE_ACCOUNT, account_key=AZURITE_KEY, container=container,
                                prefix="lake", endpoint_url=endpoint)


def _name(request) -> str:
    return f"b-{abs(hash(request.node.name)) % 10**8}"


@pytest.fixture(params=BACKENDS)
def storage(request, tmp_path):
    if request.param == "local":
        return open_storage(LocalStorageSettings(root=str(tmp_path / "lake")))
    if request.param == "s3":
        import boto3

        endpoint = request.getfixturevalue("s3_server")
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=_name(request))
        return open_storage(s3_settings(endpoint, _name(request)))
    endpoint = request.getfixturevalue("azure_server")
    storage = open_storage(azure_settings(endpoint, _name(request)))
    storage.container.create_container()
    return storage


def parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def test_put_get_round_trip(storage):
    storage.put("raw/tenant=a/x.parquet", b"hello")
    assert storage.get("raw/tenant=a/x.parquet") == b"hello"
    assert storage.exists("raw/tenant=a/x.parquet")
    assert not storage.exists("raw/tenant=a/y.parquet")


def test_put_replaces_so_redelivery_is_idempotent(storage):
    storage.put("k/part.parquet", b"first")
    storage.put("k/part.parquet", b"second")
    assert storage.get("k/part.parquet") == b"second"
    assert storage.list("k/") == ["k/part.parquet"]


def test_list_by_prefix_sorted(storage):
    for key in ["raw/b/2", "raw/a/1", "rejected/a/1", "raw/a/0"]:
        storage.put(key, b"x")
    assert storage.list("raw/") == ["raw/a/0", "raw/a/1", "raw/b/2"]
    assert storage.list("raw/a/") == ["raw/a/0", "raw/a/1"]
    assert storage.list("raw/a") == ["raw/a/0", "raw/a/1"]  # a plain string prefix, as object stores have it
    assert storage.list("nothing/") == []
    assert len(storage.list()) == 4


def test_list_info_has_sizes_and_times(storage):
    before = time.time_ns() // 1_000_000 - 2000  # object stores stamp whole seconds
    storage.put("raw/t/a.parquet", b"12345")
    storage.put("raw/t/b.parquet", b"1")
    storage.put("rejected/t/c.parquet", b"123")
    after = time.time_ns() // 1_000_000 + 2000
    infos = storage.list_info("raw/")
    assert [(i.key, i.size) for i in infos] == [("raw/t/a.parquet", 5), ("raw/t/b.parquet", 1)]
    assert all(before <= i.mtime_ms <= after for i in infos), infos


def test_delete_and_missing(storage):
    storage.put("d/x", b"1")
    storage.delete("d/x")
    storage.delete("d/x")  # missing is fine
    assert not storage.exists("d/x")
    with pytest.raises(StorageError, match="d/x"):
        storage.get("d/x")


def test_uri_names_the_object(storage):
    uri = storage.uri("raw/t/x.parquet")
    assert uri.endswith("raw/t/x.parquet")
    assert uri.startswith(("/", "s3://", "http://", "https://"))


def test_pyarrow_and_duckdb_read_through_the_arrow_filesystem(storage):
    """What convert and the Live view do: datasets over keys, and DuckDB on top of Arrow."""
    storage.put("raw/t/a.parquet", parquet(pa.table({"n": [1, 2, 3]})))
    storage.put("raw/t/b.parquet", parquet(pa.table({"n": [10]})))
    fs, root = storage.arrow_filesystem()
    dataset = ds.dataset([f"{root}/{k}" for k in storage.list("raw/")], filesystem=fs, format="parquet")
    con = duckdb.connect()
    con.register("t", dataset.to_table())
    assert con.execute("SELECT sum(n), count(*) FROM t").fetchone() == (16, 4)
    with storage.open_input("raw/t/a.parquet") as f:  # random access: a footer is read from the end
        assert pq.ParquetFile(f).metadata.num_rows == 3


def test_scan_paths_are_files_an_engine_reads(storage, tmp_path):
    storage.put("raw/t/a.parquet", parquet(pa.table({"n": [1, 2]})))
    storage.put("raw/t/b.parquet", parquet(pa.table({"n": [5]})))
    cache = tmp_path / "cache"
    paths = storage.scan_paths(["raw/t/a.parquet", "raw/t/b.parquet"], cache)
    assert duckdb.execute("SELECT sum(n) FROM read_parquet(?)", [paths]).fetchone() == (8,)
    # local storage hands out the objects themselves; the others copy them under the cache
    assert all(p.startswith(str(cache)) for p in paths) is not storage.capabilities.local_paths


def test_open_input_of_a_missing_object_is_a_storage_error(storage):
    with pytest.raises(StorageError, match="nothing.parquet"):
        storage.open_input("nothing.parquet")


def test_local_refuses_keys_outside_root(tmp_path):
    storage = open_storage(LocalStorageSettings(root=str(tmp_path / "lake")))
    with pytest.raises(StorageError, match="outside the lake root"):
        storage.put("../escape", b"x")
    with pytest.raises(StorageError, match="outside the lake root"):
        storage.scan_paths(["raw/../../escape"], tmp_path)


def test_local_listing_skips_a_put_in_progress(tmp_path):
    storage = open_storage(LocalStorageSettings(root=str(tmp_path / "lake")))
    storage.put("raw/t/a.parquet", b"x")
    (tmp_path / "lake" / "raw" / "t" / ".b.parquet.123.tmp").write_bytes(b"half")
    assert storage.list("raw/") == ["raw/t/a.parquet"]


def test_s3_missing_bucket_is_a_clear_error(s3_server):
    storage = open_storage(s3_settings(s3_server, "no-such-bucket"))
    with pytest.raises(StorageError, match="s3://no-such-bucket/lake/x: put failed"):
        storage.put("x", b"1")


def test_azure_missing_container_is_a_clear_error(azure_server):
    storage = open_storage(azure_settings(azure_server, "no-such-container"))
    with pytest.raises(StorageError, match="no-such-container/lake/x: put failed.*container does not exist"):
        storage.put("x", b"1")


def test_azure_wrong_key_is_a_clear_error(azure_server):
    settings = azure_settings(azure_server, "lake")
    settings.account_key = AZURITE_KEY[:-4] + "AAA="
    with pytest.raises(StorageError, match="lake/lake/x: put failed"):
        open_storage(settings).put("x", b"1")


def test_azure_endpoint_that_pyarrow_cannot_reach_is_a_config_error():
    pytest.importorskip("azure.storage.blob", reason="needs azure-storage-blob: pip install -e '.[test]'")
    settings = AzureStorageSettings(account_name="acct", account_key="a2V5", container="lake",
                                    endpoint_url="https://blobs.example.com")
    with pytest.raises(ConfigError, match=r"expected https://acct\.blob\."):
        open_storage(settings)
