"""Spark reads and writes URIs (what a cluster's executors share), not driver-local paths, and
gets Hadoop's S3A settings from the [storage] section."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beaconlake.backends.storage.settings import LocalStorageSettings, S3StorageSettings

pytest.importorskip("pyspark", reason="the Spark engine needs pyspark: pip install 'beaconlake[spark]'")
pytestmark = pytest.mark.spark

from beaconlake.backends.engine.spark import s3a_conf, spark_uri  # noqa: E402

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


@pytest.fixture
def spark(tmp_path, tmp_path_factory):
    from convert.convert_engines import make_engine

    engine = make_engine("spark", tmp_path, tmp_path_factory.getbasetemp() / "engines")
    yield engine
    engine.close()


def test_write_parquet_into_a_uri_folder_leaves_the_files_there_in_partition_folders(spark, tmp_path):
    spark.register_arrow("src", pa.table({
        "tenant": ["a", "a", "b"], "day": pa.array([dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 1)]),
        "v": [1, 2, 3]}))
    folder = (tmp_path / "warehouse" / "t" / "data" / "runs" / "r1").as_uri()
    files = spark.write_parquet("SELECT * FROM src", folder, ["tenant", "day"], 64)
    assert len(files) == 3 and all(f.startswith(folder + "/") and f.endswith(".parquet") for f in files)
    found = {}
    for f in files:
        assert "/_part_" not in f and "/tenant=" in f
        t = pq.read_table(f.removeprefix("file://"))
        found[(t.column("tenant")[0].as_py(), str(t.column("day")[0].as_py()))] = t.column("v").to_pylist()
        assert f"tenant={t.column('tenant')[0].as_py()}/day={t.column('day')[0].as_py()}/" in f
    assert found == {("a", "2026-03-01"): [1], ("a", "2026-03-02"): [2], ("b", "2026-03-01"): [3]}
    # nothing else left behind: Spark's own folder and markers are gone
    left = sorted(p.name for p in (tmp_path / "warehouse" / "t" / "data" / "runs" / "r1").rglob("*") if p.is_file())
    assert len(left) == 3 and all(n.endswith(".parquet") for n in left)


def test_files_given_as_uris_read_with_row_keys_like_paths(spark, tmp_path):
    a = tmp_path / "in" / "a.parquet"
    a.parent.mkdir()
    pq.write_table(pa.table({"id": [10, 11], "name": ["a", "b"]}), a)
    b = tmp_path / "in" / "b c.parquet"  # percent-encoded in its URI
    pq.write_table(pa.table({"id": [20], "name": ["d"]}), b)
    spark.read_parquet("v", [a.as_uri(), b.as_uri()], SCHEMA, key_offset=0)
    keys = {r["id"]: r["_row_key"] for r in spark.query("SELECT id, _row_key FROM v").to_pylist()}
    assert keys == {10: 0, 11: 1, 20: 1 << 32}


def test_spark_reaches_local_uris_and_says_whether_it_has_s3a(spark):
    import pyspark

    jars = list((Path(pyspark.__file__).parent / "jars").glob("hadoop-aws*.jar"))
    assert spark.reaches("file:///shared/warehouse") and spark.reaches("/shared/warehouse")
    assert spark.reaches("s3://bucket/wh") == bool(jars)  # hadoop-aws is not in PySpark's wheel
    assert not spark.reaches("abfss://c@acct.dfs.core.windows.net/wh")


def test_s3a_settings_come_from_the_storage_section():
    storage = S3StorageSettings(bucket="lake", endpoint_url="http://minio:9000", region="eu-west-1",
                                access_key_id="AK", secret_access_key="SK")
    conf = s3a_conf(storage)
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://minio:9000"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"  # an endpoint: path style, as for boto3
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"
    assert (conf["spark.hadoop.fs.s3a.access.key"], conf["spark.hadoop.fs.s3a.secret.key"]) == ("AK", "SK")
    aws = s3a_conf(S3StorageSettings(bucket="lake"))  # AWS itself: virtual hosts, the default credential chain
    assert aws["spark.hadoop.fs.s3a.path.style.access"] == "false" and "spark.hadoop.fs.s3a.access.key" not in aws
    assert s3a_conf(LocalStorageSettings()) == {}
    assert spark_uri("s3://b/k") == "s3a://b/k" and spark_uri("/x/y") == "/x/y" and spark_uri("file:///x%20y") == "/x y"
