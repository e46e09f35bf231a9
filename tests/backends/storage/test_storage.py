"""One behaviour suite for every storage backend: the local folder and S3 (moto's server mode)."""

import pytest
from support import moto_s3

from beaconlake.backends.storage import open_storage
from beaconlake.config import LocalStorageSettings, S3StorageSettings
from beaconlake.errors import StorageError


@pytest.fixture(scope="module")
def s3_server():
    with moto_s3() as endpoint:
        yield endpoint


def s3_settings(endpoint: str, bucket: str) -> S3StorageSettings:
    return S3StorageSettings(
        bucket=bucket, prefix="lake", endpoint_url=endpoint, region="us-east-1",
        access_key_id="testing", secret_access_key="testing",
    )


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return open_storage(LocalStorageSettings(root=str(tmp_path / "lake")))
    import boto3

    endpoint = request.getfixturevalue("s3_server")
    bucket = f"bucket-{abs(hash(request.node.name)) % 10**8}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    return open_storage(s3_settings(endpoint, bucket))


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
    assert storage.list("nothing/") == []
    assert len(storage.list()) == 4


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
    assert uri.startswith(("/", "s3://"))


def test_local_refuses_keys_outside_root(tmp_path):
    storage = open_storage(LocalStorageSettings(root=str(tmp_path / "lake")))
    with pytest.raises(StorageError, match="outside the lake root"):
        storage.put("../escape", b"x")


def test_s3_missing_bucket_is_a_clear_error(s3_server):
    storage = open_storage(s3_settings(s3_server, "no-such-bucket"))
    with pytest.raises(StorageError, match="s3://no-such-bucket/lake/x: put failed"):
        storage.put("x", b"1")
