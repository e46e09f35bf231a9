import asyncio
import shutil

import msgspec
import pyarrow.parquet as pq
import pytest

from beaconlake import config
from beaconlake.backends.storage.local import LocalStorage
from beaconlake.errors import StorageError
from beaconlake.ingest import spool
from beaconlake.ingest.deliver import Deliverer
from beaconlake.types import Rejection, SpoolRecord, UserAgent
from support import read_lake

DAY1 = 1_764_201_600_000  # 2025-11-27T00:00:00Z
HOUR = 3_600_000
KEYS = {"write_key": "wk_aaaaaaaaaaaaaaaaaaaa", "read_key": "rk_aaaaaaaaaaaaaaaaaaaa"}


def settings(tmp_path, **sections):
    raw = {"tenants": [{"id": "t1", **KEYS}], "delivery": {"poll_interval_secs": 0.01, "max_retry_secs": 0.2}, **sections}
    return config.parse(raw, tmp_path, environ={})


def ev(name="page_view", level="mid", client_ts=DAY1, **kw) -> dict:
    return {"level": level, "name": name, "anonymous_id": "a", "client_ts": client_ts, **kw}


def spool_records(s, records):
    async def go():
        w = spool.SegmentWriter(s.spool_path, s.spool)
        for rec in records:
            await w.commit(w.append(msgspec.msgpack.encode(rec)))
        await w.seal()

    asyncio.run(go())
    return spool.sealed_segments(s.spool_path)


def record(events, received_at=DAY1 + HOUR, sent_at=None, rejected=(), accepted=None):
    body = msgspec.json.encode({"sent_at": sent_at or received_at, "events": list(events)})
    return SpoolRecord("t1", received_at, sent_at or received_at, "203.0.113.0", "ua", UserAgent(browser="Firefox"),
                       body, accepted, list(rejected))


def test_partitions_by_tenant_level_and_event_day(tmp_path):
    s = settings(tmp_path)
    late_evening = DAY1 - HOUR  # the day before, by event time
    [seg] = spool_records(s, [record([ev(), ev("click", "low"), ev(client_ts=late_evening)], sent_at=DAY1 + HOUR)])
    Deliverer(s).run_once()
    files = sorted(p.relative_to(tmp_path / "data" / "lake").as_posix() for p in (tmp_path / "data" / "lake").rglob("*.parquet"))
    assert files == [
        f"raw/tenant=t1/level=low/year=2025/month=11/day=27/{seg.stem}.parquet",
        f"raw/tenant=t1/level=mid/year=2025/month=11/day=26/{seg.stem}.parquet",
        f"raw/tenant=t1/level=mid/year=2025/month=11/day=27/{seg.stem}.parquet",
    ]
    assert not seg.exists()
    # zstd, readable by any Parquet reader, with the canonical schema
    meta = pq.ParquetFile(tmp_path / "data" / "lake" / files[0]).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_redelivery_after_a_crash_rewrites_the_same_files(tmp_path):
    s = settings(tmp_path)
    [seg] = spool_records(s, [record([ev(), ev(), ev("click", "low")])])
    backup = tmp_path / "backup.seg"
    shutil.copy(seg, backup)
    Deliverer(s).run_once()
    first = sorted((tmp_path / "data" / "lake").rglob("*.parquet"))
    rows_first = read_lake(s.data_path)
    # The process died after writing the files but before deleting the segment: it comes back.
    shutil.copy(backup, seg)
    Deliverer(s).run_once()
    assert sorted((tmp_path / "data" / "lake").rglob("*.parquet")) == first
    rows_again = read_lake(s.data_path)
    assert len(rows_again) == 3
    assert sorted(r["event_id"] for r in rows_again) == sorted(r["event_id"] for r in rows_first)


def test_rejections_go_to_the_rejected_area(tmp_path):
    s = settings(tmp_path)
    rejection = Rejection(1, "invalid_event", "events[1]: bad", '{"x"')
    spool_records(s, [record([ev(), {"x": 1}, ev("click", "low")], rejected=[rejection], accepted=[0, 2])])
    Deliverer(s).run_once()
    assert sorted(r["name"] for r in read_lake(s.data_path)) == ["click", "page_view"]
    [row] = read_lake(s.data_path, "rejected")
    assert (row["tenant"], row["index"], row["reason"], row["excerpt"]) == ("t1", 1, "invalid_event", '{"x"')


class FlakyStorage(LocalStorage):
    def __init__(self, root, failures):
        super().__init__(root)
        self.failures = failures

    def put(self, key, data):
        if self.failures > 0:
            self.failures -= 1
            raise StorageError("simulated outage")
        super().put(key, data)


def test_storage_failure_keeps_the_segment_and_retries(tmp_path):
    s = settings(tmp_path)
    [seg] = spool_records(s, [record([ev()])])
    d = Deliverer(s, storage=FlakyStorage(s.storage.root, failures=2))
    assert d.run_once() == 0
    assert seg.exists()
    assert d.metrics.value("beaconlake_delivery_failures_total") == 1
    d.drain()
    assert not seg.exists()
    assert len(read_lake(s.data_path)) == 1


def test_unreadable_segment_is_parked_not_deleted(tmp_path):
    s = settings(tmp_path)
    spool.spool_dirs(s.spool_path)
    bad = s.spool_path / "sealed" / "0000000000000-1-x-000001.seg"
    bad.write_bytes(b"garbage")
    Deliverer(s).run_once()
    assert (s.spool_path / "corrupt" / bad.name).read_bytes() == b"garbage"


def test_delivery_to_s3(tmp_path):
    moto_server = pytest.importorskip("moto.server", reason="S3 tests need moto[server]: pip install -e '.[test]'")
    import boto3
    import pyarrow.fs as pafs

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k",
                     aws_secret_access_key="s").create_bucket(Bucket="lake")
        s = settings(tmp_path, storage={"type": "s3", "bucket": "lake", "prefix": "prod", "endpoint_url": endpoint,
                                        "access_key_id": "k", "secret_access_key": "s"})
        [seg] = spool_records(s, [record([ev(), ev("click", "low")])])
        Deliverer(s).run_once()
        assert not seg.exists()
        fs = pafs.S3FileSystem(endpoint_override=endpoint, access_key="k", secret_key="s", region="us-east-1", scheme="http")
        files = [f.path for f in fs.get_file_info(pafs.FileSelector("lake/prod/raw", recursive=True)) if f.is_file]
        assert len(files) == 2
        assert sum(pq.read_table(f, filesystem=fs).num_rows for f in files) == 2
    finally:
        server.stop()
