"""The warehouse stays bounded: snapshots expire with the files only they needed, orphan files
go once older than the safety margin, and a killed run's staging is removed by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from convert_lake import Lake
from rawlake import HOUR, MIN, event, ms, write_raw
from support import moto_s3

from beaconlake import config
from beaconlake.backends.storage import open_storage
from beaconlake.convert import tables
from beaconlake.convert.catalog import TABLE_PROPERTIES
from beaconlake.convert.maintain import HOUR_MS, maintain, reachable
from beaconlake.convert.maintain import _fs_path as fs_path
from beaconlake.backends.coordination import RUN_LEASE
from beaconlake.schedule.run import coordination_of

DAY10 = ms("2026-03-10T00:00:00")
EVERY_RUN = {"maintenance_interval_hours": 0, "snapshot_retention_hours": 0}


def data_bytes(lake: Lake) -> int:
    """Bytes of the tables' data files (metadata is bounded by count: write.metadata.previous-versions-max)."""
    return sum(p.stat().st_size for p in (lake.root / "warehouse").glob("*/*/data/**/*") if p.is_file())


def files_on_disk(lake: Lake, table: str) -> set[str]:
    return {str(p) for p in (lake.root / "warehouse").rglob(f"{table}/**/*") if p.is_file()}


def a_day(lake: Lake, visitors: int = 400) -> None:
    write_raw(lake.lake, [event(f"v{i}", DAY10 + 10 * HOUR + i * 7000 + j * MIN, "click", "low",
                                props={"x": i * j, "pad": "p" * 40})
                          for i in range(visitors) for j in range(5)], "seg-0000")


def one_more_event(lake: Lake, n: int) -> None:
    write_raw(lake.lake, [event(f"late-{n}", DAY10 + 20 * HOUR + n * 1000)], f"seg-{n:04d}")


@pytest.mark.parametrize("maintained", [True, False])
def test_many_small_converts_keep_the_warehouse_bounded(tmp_path, scratch, maintained):
    cfg = EVERY_RUN if maintained else {"maintenance_enabled": False}
    lake = Lake(tmp_path, "duckdb", scratch, convert_cfg=cfg)
    a_day(lake)
    lake.convert()
    one_more_event(lake, 1)
    lake.convert()
    settled = data_bytes(lake)
    for n in range(2, 8):
        one_more_event(lake, n)
        summary = lake.convert()
    grown = data_bytes(lake)
    assert len(lake.rows("events")) == 2000 + 7
    if not maintained:  # the control: without maintenance every run leaves its rewrite behind
        assert grown > settled * 2.5, (settled, grown)
        return
    assert summary.maintenance is not None and summary.maintenance.snapshots_expired > 0
    assert summary.maintenance.files_deleted > 0 and summary.maintenance.bytes_deleted > 0
    assert grown < settled * 1.25, (settled, grown)
    store = lake.store()
    for tdef in tables.ALL:  # nothing on disk that the one retained snapshot does not need
        table = store.table(tdef.name)
        assert len(table.snapshots()) <= 1
        needed = {fs_path(loc) for loc in reachable(table)}
        assert files_on_disk(lake, tdef.name) <= needed, tdef.name
        assert len(table.metadata.metadata_log) <= int(TABLE_PROPERTIES["write.metadata.previous-versions-max"])


def test_a_retained_snapshot_still_reads_and_an_expired_one_is_gone(tmp_path, scratch):
    lake = Lake(tmp_path, "duckdb", scratch, convert_cfg={"maintenance_interval_hours": 0, "snapshot_retention_hours": 1})
    a_day(lake, 50)
    lake.convert()
    events = lake.store().table("events")
    first = events.current_snapshot().snapshot_id
    first_files = {fs_path(t.file.file_path) for t in events.scan().plan_files()}
    one_more_event(lake, 1)
    summary = lake.convert()
    assert summary.maintenance.snapshots_expired == 0  # all younger than an hour
    events = lake.store().table("events")
    assert events.scan(snapshot_id=first).to_arrow().num_rows == 250  # time travel
    assert events.scan().to_arrow().num_rows == 251

    later = maintain(lake.store(), 1, 24, time.time_ns() // 1_000_000 + 2 * HOUR_MS)  # two hours on
    assert later.snapshots_expired > 0
    events = lake.store().table("events")
    assert [s.snapshot_id for s in events.snapshots()] == [events.current_snapshot().snapshot_id]
    assert events.scan().to_arrow().num_rows == 251
    assert not any(os.path.exists(p) for p in first_files)  # the day's first files were only the old snapshot's


def test_orphan_files_go_only_once_older_than_the_margin(tmp_path, scratch):
    lake = Lake(tmp_path, "duckdb", scratch, convert_cfg={"maintenance_interval_hours": 0})
    a_day(lake, 20)
    lake.convert()
    events = lake.store().table("events")
    [live] = [fs_path(t.file.file_path) for t in events.scan().plan_files()]
    folder = Path(live).parent
    # what a commit in flight has written (data file and manifest) and a killed run left an hour ago
    in_flight = folder / "in-flight-0001.parquet"
    in_flight.write_bytes(Path(live).read_bytes())
    manifest = Path(fs_path(events.metadata_location)).parent / "in-flight-m0.avro"
    manifest.write_bytes(b"avro bytes")
    dead = folder / "killed-run-0001.parquet"
    dead.write_bytes(Path(live).read_bytes())
    old = time.time() - 25 * 3600
    os.utime(dead, (old, old))

    done = maintain(lake.store(), 6, 24, time.time_ns() // 1_000_000)
    assert done.orphans_deleted == 1 and not dead.exists()
    assert in_flight.exists() and manifest.exists() and Path(live).exists()
    assert lake.store().table("events").scan().to_arrow().num_rows == 100
    os.utime(in_flight, (old, old))
    assert maintain(lake.store(), 6, 24, time.time_ns() // 1_000_000).orphans_deleted == 1
    assert not in_flight.exists() and Path(live).exists()


def test_maintenance_runs_at_its_interval(tmp_path, scratch):
    lake = Lake(tmp_path, "duckdb", scratch, convert_cfg={"maintenance_interval_hours": 1})
    a_day(lake, 5)
    assert lake.convert().maintenance is not None  # never done: due
    one_more_event(lake, 1)
    assert lake.convert().maintenance is None  # done less than an hour ago
    mark = tmp_path / "run" / "convert-maintenance.json"
    mark.write_text('{"last_ms": %d}' % (time.time_ns() // 1_000_000 - 2 * HOUR_MS))
    assert lake.convert().maintenance is not None


def test_staging_of_a_live_run_is_left_alone(tmp_path, scratch):
    lake = Lake(tmp_path, "duckdb", scratch)
    a_day(lake, 5)
    live = tmp_path / "run" / "convert-staging" / "live-run" / "events"
    live.mkdir(parents=True)
    (live / "part.parquet").write_bytes(b"being written")
    lock = coordination_of(lake.settings).acquire(RUN_LEASE, 15)  # that run holds the run lease
    try:
        with pytest.raises(Exception, match="another convert run holds the run lease"):
            lake.convert()
        assert (live / "part.parquet").exists()
    finally:
        lock.release()
    lake.convert()  # the run is over (the lock is free): what it left is removed
    assert list((tmp_path / "run" / "convert-staging").iterdir()) == []


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_s3() as endpoint:
        yield endpoint


def test_a_killed_convert_leaves_nothing_behind_after_the_next_run(tmp_path, s3_endpoint):
    """SIGKILL a real `beaconlake convert` reading an S3 lake mid-run (its staging holds the raw
    files it copied), then run it again: the dead run's staging is gone and every event is in the
    tables once."""
    local = tmp_path / "src"
    expected = 0
    for d in range(12):
        day = DAY10 + d * 24 * HOUR
        write_raw(local, [event(f"d{d}-v{i}", day + 9 * HOUR + i * 20_000 + j * 9_000, "click", "low",
                                props={"i": i, "j": j, "pad": os.urandom(24).hex()})
                          for i in range(300) for j in range(6)], f"seg-{d:04d}")
        expected += 1800
    s3 = {"type": "s3", "bucket": "killed", "prefix": "lake", "endpoint_url": s3_endpoint,
          "access_key_id": "testing", "secret_access_key": "testing"}
    cfg = tmp_path / "beaconlake.toml"
    cfg.write_text(textwrap.dedent("""\
        data_dir = "data"
        [storage]
        %s
        [convert]
        max_batch_mb = 1
        [engine]
        type = "duckdb"
        threads = 1
        memory_limit_mb = 512
        [[tenants]]
        id = "shop"
        write_key = "wk_shop_aaaaaaaaaaaaaaaa"
        read_key = "rk_shop_bbbbbbbbbbbbbbbb"
        """) % "\n".join(f'{k} = "{v}"' for k, v in s3.items()))
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket="killed")
    storage = open_storage(config.load(cfg).storage)
    for path in sorted(local.rglob("*.parquet")):
        storage.put(path.relative_to(local).as_posix(), path.read_bytes())

    command = [sys.executable, "-m", "beaconlake.cli", "convert", "--config", str(cfg), "--no-progress"]
    staging = tmp_path / "data" / "run" / "convert-staging"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(staging.glob("*/raw/**/*.parquet"))) >= 3:  # a few batches in
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait(60) == -signal.SIGKILL, "the convert run finished before it could be killed"
    [killed] = list(staging.iterdir())
    left = sum(p.stat().st_size for p in killed.rglob("*") if p.is_file())
    assert left > 0

    assert subprocess.run(command, capture_output=True).returncode == 0
    assert not killed.exists() and list(staging.iterdir()) == []
    out = subprocess.run([sys.executable, "-m", "beaconlake.cli", "query", "--config", str(cfg), "--format", "csv",
                          "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events"],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["n,ids", f"{expected},{expected}"]
