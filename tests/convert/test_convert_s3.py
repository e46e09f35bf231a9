"""A raw lake in an object store (S3 through moto's server, Azure Blob Storage through Azurite):
listed and read through the storage backend, copied for the engine."""

from __future__ import annotations

import msgspec
import pytest
from convert_lake import Lake
from rawlake import MIN, event, ms, write_raw
from support import moto_s3

from beaconlake import config


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_s3() as endpoint:
        yield endpoint


def converts_through(storage_section: dict, tmp_path, scratch, put) -> None:
    """Raw files put in the store by ``put(key, path)``, then converted through the storage seam
    alone: the sessions come out right, the engine's copies are gone, a second run finds nothing new."""
    t = ms("2026-03-10T23:50:00")
    local = tmp_path / "staging"
    for path in write_raw(local, [event("a", t), event("a", t + 20 * MIN, "click", "low"), event("b", t)]):
        put(path.relative_to(local).as_posix(), path)
    lake = Lake(tmp_path / "data", "duckdb", scratch)
    lake.settings = config.parse({
        "data_dir": str(tmp_path / "data"), "tenants": [{"id": "shop", "write_key": "w" * 20, "read_key": "r" * 20}],
        "storage": storage_section,
    }, tmp_path, environ={})
    summary = lake.convert()
    assert (summary.new_files, summary.events) == (2, 3)
    [a] = [s for s in lake.rows("sessions") if s["anonymous_id"] == "a"]
    assert a["events"] == 2 and str(a["session_date"]) == "2026-03-10"
    assert not list((tmp_path / "data" / "run").glob("convert-staging/*"))  # the copies are gone
    assert lake.convert().new_files == 0


def test_a_raw_lake_on_s3_converts(tmp_path, scratch, s3_endpoint):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="lake-bucket")
    section = {"type": "s3", "bucket": "lake-bucket", "prefix": "lake", "endpoint_url": s3_endpoint,
               "access_key_id": "testing", "secret_access_key": "testing"}
    converts_through(section, tmp_path, scratch, lambda key, path: s3.upload_file(str(path), "lake-bucket", "lake/" + key))


def test_a_raw_lake_on_azure_converts(tmp_path, scratch):
    """The same through the azure backend (Azurite): convert knows no storage but the seam."""
    from support import AZURITE_ACCOUNT, AZURITE_KEY, azurite

    from beaconlake.backends.storage import open_storage
    from beaconlake.backends.storage.settings import AzureStorageSettings

    with azurite() as endpoint:
        section = {"type": "azure", "account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY, "container": "lake",
                   "prefix": "prod", "endpoint_url": endpoint}
        storage = open_storage(msgspec.convert(section, AzureStorageSettings))  # the section as the config loader reads it
        storage.container.create_container()
        converts_through(section, tmp_path, scratch, lambda key, path: storage.put(key, path.read_bytes()))
