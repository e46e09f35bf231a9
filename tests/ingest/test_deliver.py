import ast
import asyncio
import fcntl
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest

from beaconlake import config
from beaconlake.backends.storage.local import LocalStorage
from beaconlake.errors import StorageError
from beaconlake.ingest import deliver, spool
from beaconlake.ingest.deliver import PARK_AFTER_ATTEMPTS, Deliverer
from beaconlake.lake import segment
from beaconlake.types import Rejection, SpoolRecord, UserAgent
from support import free_port, read_lake, write_config

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
    report = json.loads((s.spool_path / "corrupt" / f"{bad.stem}.json").read_text())
    assert report["unreadable_byte_ranges"] == [[0, 7]] and "not a beaconlake spool segment" in report["error"]


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


# -- one bad thing never stops the rest -------------------------------------------------------


def raw_record(event_bytes: list[bytes], received_at=DAY1 + HOUR, accepted=None) -> SpoolRecord:
    """A record whose body is made of these exact bytes (the door may have let anything through)."""
    body = b'{"sent_at":%d,"events":[%s]}' % (received_at, b",".join(event_bytes))
    return SpoolRecord("t1", received_at, received_at, "203.0.113.0", "ua", UserAgent(), body, accepted, [])


def ok_event(n: int) -> bytes:
    return msgspec.json.encode(ev(anonymous_id=f"p{n}"))


def test_an_event_with_invalid_utf8_is_rejected_and_the_rest_delivered(tmp_path):
    s = settings(tmp_path)
    bad = b'{"level":"mid","name":"page_view","anonymous_id":"x","client_ts":%d,"props":{"q":"caf\xe9 \xff"}}' % DAY1
    [seg] = spool_records(s, [record([ev()]), raw_record([ok_event(1), bad, ok_event(2)]), record([ev("click", "low")])])
    later = spool_records(s, [record([ev(anonymous_id="later")])])[-1]
    d = Deliverer(s)
    assert d.run_once() == 2
    assert not seg.exists() and not later.exists()
    assert sorted(r["anonymous_id"] for r in read_lake(s.data_path)) == ["a", "a", "later", "p1", "p2"]
    [row] = read_lake(s.data_path, "rejected")
    assert (row["index"], row["reason"], row["segment"]) == (1, "undeliverable", seg.stem)
    assert "events[1]: props is not valid UTF-8 (byte 0xe9 at offset 9)" in row["error"]
    assert '"caf\ufffd \ufffd"' in row["excerpt"]
    assert d.metrics.value("beaconlake_events_undeliverable_total") == 1
    assert d.metrics.value("beaconlake_delivery_failures_total") == 0


def test_raw_columns_hold_each_event_as_decoded_and_a_row_arrow_refuses_is_rejected_alone():
    from beaconlake.ingest.rows import segment_rows
    from beaconlake.lake.records import LakeEvent

    events = [ev(f"e{i}", event_id=f"0b3ba0c4-6bd8-4f3c-9d0b-0c5c7f1b2a9{i}", user_id=None if i else "u",
                 title=f"t{i}", props={"i": i}, url=None if i == 2 else "https://x/") for i in range(4)]
    frames = [msgspec.msgpack.encode(record(events[:3], sent_at=DAY1 + HOUR - 5)),
              msgspec.msgpack.encode(record(events[3:]))]
    rows = segment_rows("seg-9", frames, DAY1)
    # a string no JSON decodes to: the one way left for Arrow to refuse a row (rows.py)
    rows.rows[1] = rows.rows[1]._replace(title="\ud800")
    raw, rejected = rows.tables()
    [table] = raw.values()
    got = table.to_pylist()
    want = [r for i, r in enumerate(rows.rows) if i != 1]
    assert [r["event_id"] for r in got] == [w.event_id for w in want]
    fields = LakeEvent._fields[:-1]  # all but the batch index, which is not stored
    for row, w, sent_at in zip(got, want, [DAY1 + HOUR - 5, DAY1 + HOUR - 5, DAY1 + HOUR]):
        assert {f: row[f] for f in fields} == {f: getattr(w, f) for f in fields}
        assert (row["event_ts"] - row["client_ts"], row["sent_at"], row["ip"], row["ua_browser"]) == \
            (DAY1 + HOUR - sent_at, sent_at, "203.0.113.0", "Firefox")
        assert (row["segment"], row["source"], row["props"]) == ("seg-9", "http", '{"i":%d}' % int(w.name[1]))
    [(_, bad)] = rejected.items()
    assert bad.column("index").to_pylist() == [1]
    assert "events[1]: cannot be stored in the lake" in bad.column("error")[0].as_py()


def test_a_record_that_does_not_decode_is_rejected_whole(tmp_path):
    s = settings(tmp_path)
    [seg] = spool_records(s, [record([ev()])])
    w_payloads = [msgspec.msgpack.encode(record([ev()])), b"\x93not a record", msgspec.msgpack.encode(record([ev()]))]
    seg2 = spool.write_sealed_segment(s.spool_path, "1764205200000-test-000001", w_payloads)
    Deliverer(s).run_once()
    assert not seg.exists() and not seg2.exists()
    assert len(read_lake(s.data_path)) == 3
    [row] = read_lake(s.data_path, "rejected")
    assert (row["tenant"], row["index"], row["reason"]) == ("_unknown", -1, "undeliverable")
    assert "spool record 1 cannot be read as a request" in row["error"]
    assert row["received_at"] == 1764205200000  # the segment's creation time, from its name


def test_a_flipped_byte_mid_segment_costs_one_event_and_parks_the_segment(tmp_path):
    s = settings(tmp_path)
    [seg] = spool_records(s, [record([ev(anonymous_id=f"person-{i:03d}")]) for i in range(100)])
    data = bytearray(seg.read_bytes())
    at = data.find(b"person-050")
    data[at] ^= 0x01
    seg.write_bytes(bytes(data))
    d = Deliverer(s)
    d.run_once()
    assert not seg.exists()
    people = sorted(r["anonymous_id"] for r in read_lake(s.data_path))
    assert people == [f"person-{i:03d}" for i in range(100) if i != 50]
    parked = s.spool_path / "corrupt" / seg.name
    assert parked.read_bytes() == bytes(data)  # kept exactly as found: nothing deleted that was not delivered
    report = json.loads((s.spool_path / "corrupt" / f"{seg.stem}.json").read_text())
    assert (report["reason"], report["frames_recovered"], report["frames_expected"]) == ("corrupt", 99, 100)
    assert report["events_delivered"] == 99
    [(start, end)] = report["unreadable_byte_ranges"]
    assert start < at < end
    assert d.metrics.value("beaconlake_segments_parked_total", reason="corrupt") == 1
    assert d.metrics.value("beaconlake_spool_unreadable_bytes_total") == end - start
    assert "beaconlake_spool_parked_segments 1" in d.metrics.render()


def test_a_cleanly_sealed_segment_cut_short_is_parked_not_taken_for_a_torn_tail(tmp_path):
    s = settings(tmp_path)
    [seg] = spool_records(s, [record([ev(anonymous_id=f"p{i}")]) for i in range(10)])
    data = seg.read_bytes()
    seg.write_bytes(data[:len(data) - 60])  # the trailer and part of the last frame gone
    Deliverer(s).run_once()
    assert len(read_lake(s.data_path)) == 9
    report = json.loads((s.spool_path / "corrupt" / f"{seg.stem}.json").read_text())
    assert report["sealed"] is None and "no trailer" in report["error"]


def test_a_failing_segment_is_retried_then_parked_while_the_others_are_delivered(tmp_path):
    s = settings(tmp_path)
    spool.spool_dirs(s.spool_path)
    stuck = s.spool_path / "sealed" / "1764201600000-1-aaaaaa-000001.seg"
    stuck.mkdir()  # reading it fails (IsADirectoryError) on every attempt: no fake needed
    good = spool_records(s, [record([ev()])])
    d = Deliverer(s)
    assert d.run_once() == 1  # the newer segment is delivered; the older one does not block it
    assert good[-1].name != stuck.name and not good[-1].exists()
    deadline = time.monotonic() + 10
    while stuck.exists() and time.monotonic() < deadline:
        d.run_once()
        time.sleep(0.02)
    assert not stuck.exists()
    assert (s.spool_path / "corrupt" / stuck.name).is_dir()
    report = json.loads((s.spool_path / "corrupt" / f"{stuck.stem}.json").read_text())
    assert (report["reason"], report["attempts"]) == ("failing", PARK_AFTER_ATTEMPTS)
    assert report["error"].startswith("IsADirectoryError")
    assert d.metrics.value("beaconlake_delivery_failures_total") == PARK_AFTER_ATTEMPTS
    assert d.metrics.value("beaconlake_segments_parked_total", reason="failing") == 1


def test_a_storage_outage_is_retried_for_ever_and_never_parks(tmp_path):
    s = settings(tmp_path)
    [seg] = spool_records(s, [record([ev()])])
    storage = FlakyStorage(s.storage.root, failures=PARK_AFTER_ATTEMPTS * 3)
    d = Deliverer(s, storage=storage)
    deadline = time.monotonic() + 20
    while storage.failures and time.monotonic() < deadline:
        d.run_once()
        assert seg.exists()  # never parked, never deleted
        time.sleep(0.05)
    d.drain()
    assert not seg.exists() and not (s.spool_path / "corrupt").exists()
    assert len(read_lake(s.data_path)) == 1
    assert d.metrics.value("beaconlake_delivery_failures_total") == PARK_AFTER_ATTEMPTS * 3


def test_lag_is_the_age_of_the_oldest_undelivered_segment_open_or_sealed(tmp_path):
    s = settings(tmp_path)
    now = int(time.time() * 1000)
    spool.write_sealed_segment(s.spool_path, f"{now - 60_000:013d}-test-000001", [msgspec.msgpack.encode(record([ev()]))])
    d = Deliverer(s, storage=FlakyStorage(s.storage.root, failures=10**6))  # the lake is down
    d.run_once()
    lag = d.metrics.gauges["beaconlake_delivery_lag_seconds"][""]
    assert 60 <= lag < 70, lag
    # a live writer's segment, older still (its writer holds the flock, so it stays in new/)
    live = s.spool_path / "new" / f"{now - 120_000:013d}-4242-abcdef-000001.seg"
    fd = os.open(live, os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, segment.header(b"12345678") + segment.frame(segment.seed_of(b"12345678"), b"x"))
        d.run_once()
        assert live.exists()
        assert d.metrics.gauges["beaconlake_delivery_lag_seconds"][""] >= 120
    finally:
        os.close(fd)


def test_an_empty_sealed_segment_is_removed_quietly(tmp_path, caplog):
    s = settings(tmp_path)
    spool.spool_dirs(s.spool_path)
    empty = s.spool_path / "sealed" / "1764201600000-1-aaaaaa-000001.seg"
    empty.write_bytes(b"")
    d = Deliverer(s)
    d.run_once()
    assert not empty.exists() and not (s.spool_path / "corrupt").exists()
    assert "ERROR" not in caplog.text


DELIVERER_SCRIPT = """
import multiprocessing, sys, time
from beaconlake import config
from beaconlake import up
settings = config.load(sys.argv[1])
proc = multiprocessing.get_context("spawn").Process(target=up.run_deliverer, args=(settings,))  # as `up` starts it
proc.start()
time.sleep(float(sys.argv[2]))
proc.terminate()
proc.join(30)
"""


def test_the_spawned_deliverer_logs_json_lines_tracebacks_included(tmp_path):
    config_path = write_config(tmp_path, free_port(), {"realtime": {"enabled": False}, "delivery": {"max_retry_secs": 0.2}})
    sealed = tmp_path / "data" / "spool" / "sealed"
    sealed.mkdir(parents=True)
    (sealed / "1764201600000-1-aaaaaa-000001.seg").mkdir()  # fails with a traceback on every attempt
    out = subprocess.run([sys.executable, "-c", DELIVERER_SCRIPT, str(config_path), "4"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines, out
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    failed = [r for r in records if r["logger"] == "beaconlake.ingest.deliver" and r["level"] == "error"]
    assert failed and "IsADirectoryError" in failed[0]["exc"] and "Traceback" in failed[0]["exc"]
    assert any("parked" in r["msg"] for r in failed)


def deliver_command(config_path):
    return subprocess.run([sys.executable, "-m", "beaconlake.cli", "deliver", "--config", str(config_path)],
                          capture_output=True, text=True, timeout=120)


def test_the_deliver_command_delivers_around_a_bad_event_and_says_what_it_parked(tmp_path):
    config_path = write_config(tmp_path, free_port(), {"realtime": {"enabled": False}})
    s = config.load(config_path)
    bad = b'{"level":"mid","name":"page_view","anonymous_id":"x","props":{"q":"\xff"}}'
    spool_records(s, [raw_record([ok_event(1), bad])])
    first = deliver_command(config_path)
    assert first.returncode == 0, first
    assert len(read_lake(s.data_path)) == 1 and len(read_lake(s.data_path, "rejected")) == 1
    [seg] = spool_records(s, [record([ev()]), record([ev()])])
    data = bytearray(seg.read_bytes())
    data[-40] ^= 0xFF
    seg.write_bytes(bytes(data))
    second = deliver_command(config_path)
    assert second.returncode == 1
    assert f"1 segment(s) parked in {s.spool_path / 'corrupt'}" in second.stdout
    assert len(read_lake(s.data_path)) == 2  # the frame before the damage was delivered


class Recorder:
    """A pre-delivery consumer that notes what delivery showed it and whether the segments were
    still there: the contract's side of delivery, without any stage behind it."""

    name = "recorder"
    failures_metric = "beaconlake_recorder_failures_total"

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple[str, list[tuple[str, bool]]]] = []
        self.fail_on = fail_on

    def _call(self, what: str, segments=()) -> None:
        self.calls.append((what, [(p.name, p.exists()) for p in segments]))
        if what == self.fail_on:
            raise RuntimeError(f"{what} broke")

    def process(self, segments, events):
        self._call("process", segments)
        self.events = [(tenant, ev.name) for p in segments for tenant, ev in events(p)]

    def tick(self):
        self._call("tick")

    def close(self):
        self._call("close")


def test_consumers_see_every_sealed_segment_before_delivery_deletes_it(tmp_path):
    s = settings(tmp_path)
    spool_records(s, [record([ev()])])
    segs = spool_records(s, [record([ev("click", "low")])])  # every sealed segment: both
    assert len(segs) == 2
    first, second = Recorder(), Recorder()
    d = Deliverer(s, consumers=[first, second])
    d.run_once()
    d.run_once()  # nothing sealed any more: a tick
    d.close()
    expected = [("process", [(p.name, True) for p in segs]), ("tick", []), ("close", [])]
    assert first.calls == second.calls == expected
    assert not any(p.exists() for p in segs) and len(read_lake(s.data_path)) == 2
    assert first.events == second.events == [("t1", "page_view"), ("t1", "click")]


def test_a_segment_is_decoded_once_for_its_consumers_and_its_delivery(tmp_path, monkeypatch):
    s = settings(tmp_path)
    spool_records(s, [record([ev(), ev("click", "low")])])
    segs = spool_records(s, [record([ev()])])  # every sealed segment: both
    decoded = []
    real = deliver.segment_rows
    monkeypatch.setattr(deliver, "segment_rows", lambda name, *a: decoded.append(name) or real(name, *a))
    first, second = Recorder(), Recorder()
    d = Deliverer(s, consumers=[first, second])
    assert d.run_once() == 2
    assert sorted(decoded) == sorted(p.stem for p in segs)  # once each, for two consumers and delivery
    lake = sorted((r["tenant"], r["name"]) for r in read_lake(s.data_path))
    assert sorted(first.events) == sorted(second.events) == lake and len(lake) == 3


class GcWatcher(Recorder):
    """Notes whether Python's cyclic collector was on while it read the pass's segments."""

    def process(self, segments, events):
        self.collecting = gc.isenabled()
        super().process(segments, events)


@pytest.mark.parametrize("fail_on", [None, "process"])
def test_a_pass_holds_the_cyclic_collector_until_it_ends_and_gives_it_back(tmp_path, fail_on):
    s = settings(tmp_path)
    spool_records(s, [record([ev(), ev("click", "low")])])
    watcher = GcWatcher(fail_on=fail_on)
    d = Deliverer(s, consumers=[watcher])
    assert gc.isenabled()
    assert d.run_once() == 1
    assert watcher.collecting is False  # the decoded events are never traversed
    assert gc.isenabled(), "the collector stayed off after the pass"
    spool_records(s, [record([ev()])])
    gc.disable()  # a caller that turned it off itself keeps it off
    try:
        assert d.run_once() == 1
        assert not gc.isenabled()
    finally:
        gc.enable()
    d.close()
    assert len(read_lake(s.data_path)) == 3


def test_a_failing_consumer_is_counted_and_delivery_goes_on(tmp_path, caplog):
    s = settings(tmp_path)
    [seg] = spool_records(s, [record([ev(), ev()])])
    broken, after = Recorder(fail_on="process"), Recorder()
    d = Deliverer(s, consumers=[broken, after])
    d.run_once()
    assert [r["name"] for r in read_lake(s.data_path)] == ["page_view", "page_view"] and not seg.exists()
    assert after.calls == [("process", [(seg.name, True)])]  # the next consumer still saw it
    assert d.metrics.value("beaconlake_recorder_failures_total") == 1
    assert "recorder: process failed; lake delivery continues" in caplog.text and "process broke" in caplog.text
    broken.fail_on = "close"
    d.close()  # a failing close is counted too, and the others still close
    assert d.metrics.value("beaconlake_recorder_failures_total") == 2 and after.calls[-1] == ("close", [])


ALLOCATOR_PROBE = """
import os, signal, types
import pyarrow as pa
from beaconlake.ingest import deliver

class Probe:
    settings = types.SimpleNamespace(delivery=types.SimpleNamespace(poll_interval_secs=0.01))
    def run_once(self):
        print(pa.default_memory_pool().backend_name, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        return 0
    def drain(self): pass
    def close(self): pass

deliver.run_forever(Probe)
"""


@pytest.mark.parametrize(("env", "backend"), [(None, "system"), ("jemalloc", "jemalloc"), ("mimalloc", "mimalloc")])
def test_the_deliverer_process_takes_arrow_buffers_from_the_c_allocator_unless_told(env, backend):
    environ = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if env:
        environ["ARROW_DEFAULT_MEMORY_POOL"] = env
    out = subprocess.run([sys.executable, "-c", ALLOCATOR_PROBE], env=environ, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [backend]


DELIVERY_ALONE = """
import json, sys
from beaconlake import config
from beaconlake.ingest.deliver import Deliverer
s = config.parse({"tenants": [{"id": "t1", "write_key": "wk_aaaaaaaaaaaaaaaaaaaa", "read_key": "rk_aaaaaaaaaaaaaaaaaaaa"}]},
                 sys.argv[1], environ={})
assert s.realtime.enabled
Deliverer(s).run_once()
Deliverer(s).drain()
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("beaconlake.realtime", "beaconlake.serve")))))
"""


def test_delivery_imports_no_stage_it_hands_segments_to(tmp_path):
    # ingest never imports realtime (its consumer is injected) nor serve (the composition layer):
    # not at import, not when a deliverer with realtime enabled runs, not lazily in a function
    out = subprocess.run([sys.executable, "-c", DELIVERY_ALONE, str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    # config.py assembles realtime's settings leaf: a typed section, not the stage
    assert [m for m in loaded if not (m.endswith(".settings") or f"{m}.settings" in loaded)] == []
    tree = ast.parse(Path(deliver.__file__).read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith(("beaconlake.realtime", "beaconlake.serve", "beaconlake.up"))]
