"""Unreadable raw files are moved to quarantine/ with their reason; everything else converts,
exactly once, on local storage and on S3, whether the footer or only a data page is broken."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from badfiles import BROKEN, REASONS, corrupt_page, good_events, invalid_utf8
from convert_lake import Lake, tenant
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rawlake import event, ms, write_raw
from support import moto_s3

from beaconlake import cli, config
from beaconlake.backends.storage import open_storage
from beaconlake.convert import quarantine
from beaconlake.convert.cli import EXIT_QUARANTINED
from beaconlake.lake import layout

T10, T11 = ms("2026-03-10T10:00:00"), ms("2026-03-11T10:00:00")


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_s3() as endpoint:
        yield endpoint


def _s3_settings(tmp_path: Path, endpoint: str, bucket: str) -> config.Settings:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    return config.parse({
        "data_dir": str(tmp_path / "data"), "tenants": [tenant("shop"), tenant("blog")],
        "storage": {"type": "s3", "bucket": bucket, "prefix": "lake", "endpoint_url": endpoint,
                    "access_key_id": "testing", "secret_access_key": "testing"},
    }, tmp_path, environ={})


def _upload(local: Path, settings: config.Settings) -> None:
    storage = open_storage(settings.storage)
    for path in sorted(local.rglob("*.parquet")):
        storage.put(path.relative_to(local).as_posix(), path.read_bytes())


@pytest.mark.parametrize("where", ["local", "s3"])
def test_bad_files_are_quarantined_and_the_rest_converts_exactly_once(tmp_path, scratch, request, where):
    src = tmp_path / "src"
    good = good_events("good", T10) + good_events("next-day", T11, 50)
    blog = good_events("reader", T10, 40, tenant="blog")
    write_raw(src, good + blog, "seg-0001")
    bad = {kind: make(src, good_events(f"bad-{kind}", T10 + 3_600_000, 30), f"seg-{kind}")
           for kind, make in BROKEN.items() if kind != "corrupt_page"}
    bad["corrupt_page"] = corrupt_page(src, good_events("bad-page", T11 + 3_600_000, 300), "seg-corrupt_page")
    # only an engine reading the rows finds this one, in the next day's batch
    bad["invalid_utf8"] = invalid_utf8(src, good_events("bad-utf8", T11 + 3_600_000, 300), "seg-invalid_utf8")
    bad_keys = {kind: p.relative_to(src).as_posix() for kind, p in bad.items()}

    lake = Lake(tmp_path, "duckdb", scratch, tenants=[tenant("shop"), tenant("blog")])
    if where == "s3":
        lake.settings = _s3_settings(tmp_path, request.getfixturevalue("s3_endpoint"), "q-bucket")
        _upload(src, lake.settings)
    else:
        import shutil
        shutil.copytree(src, lake.lake)
    storage = open_storage(lake.settings.storage)

    summary = lake.convert()
    reasons = {q.key: q.reason for q in summary.quarantined}
    assert set(reasons) == set(bad_keys.values())
    for kind, key in bad_keys.items():
        assert REASONS[kind] in reasons[key], (kind, reasons[key])
    assert "engine stopped on it" in reasons[bad_keys["invalid_utf8"]]
    assert "engine stopped on it" not in reasons[bad_keys["corrupt_page"]]  # found before any engine read it

    # every good event once, nothing of a quarantined file
    rows = lake.rows("events")
    assert Counter(r["event_id"] for r in rows) == Counter(e["event_id"] for e in good + blog)
    assert {r["tenant"] for r in rows} == {"shop", "blog"}
    assert summary.events == len(good) + len(blog)

    # the bytes are kept under quarantine/<raw key>, with a reason record; raw/ no longer has them
    for key in bad_keys.values():
        assert not storage.exists(key)
        assert storage.get(layout.quarantine_key(key)) == (src / key).read_bytes()
        record = json.loads(storage.get(layout.reason_key(key)))
        assert record["key"] == key and record["reason"] == reasons[key] and record["run_id"] == summary.run_id
    listed = quarantine.listing(storage, "shop")
    assert {r["key"] for r in listed} == set(bad_keys.values())
    assert quarantine.listing(storage, "blog") == []

    # the next run has nothing new and quarantines nothing more; the tables stay as they are
    again = lake.convert()
    assert (again.new_files, again.events, again.quarantined) == (0, 0, [])
    assert len(lake.rows("events")) == len(good) + len(blog)


def test_a_repaired_file_put_back_converts(tmp_path, scratch):
    lake = Lake(tmp_path, "duckdb", scratch)
    write_raw(lake.lake, good_events("ok", T10, 20), "seg-0001")
    events = good_events("late-fix", T10 + 3_600_000, 20)
    path = corrupt_page(lake.lake, events, "seg-0002")
    assert [q.key for q in lake.convert().quarantined] == [path.relative_to(lake.lake).as_posix()]
    assert not path.exists()
    write_raw(lake.lake, events, "seg-0002")  # the segment delivered again, whole
    summary = lake.convert()
    assert (summary.new_files, summary.quarantined) == (1, [])
    assert Counter(r["anonymous_id"] for r in lake.rows("events")) == {"ok": 20, "late-fix": 20}


def test_a_page_that_fails_mid_read_is_survived_by_both_engines(tmp_path, scratch, engine_kind):
    lake = Lake(tmp_path, engine_kind, scratch)
    write_raw(lake.lake, [event("a", T10), event("a", T10 + 60_000, "click", "low")], "seg-0001")
    corrupt_page(lake.lake, good_events("b", T10, 300), "seg-0002")
    summary = lake.convert()
    assert len(summary.quarantined) == 1 and "a data page does not decode" in summary.quarantined[0].reason
    assert sorted(r["anonymous_id"] for r in lake.rows("events")) == ["a", "a"]
    assert len(lake.rows("sessions")) == 1


def test_a_quarantined_file_that_was_converted_before_does_not_stop_its_day(tmp_path, scratch):
    """A converted file delivered again broken: its day still converts (the earlier content is
    named in the reason record), where a file deleted from the lake stops the run."""
    lake = Lake(tmp_path, "duckdb", scratch)
    write_raw(lake.lake, good_events("a", T10, 10), "seg-0001")
    write_raw(lake.lake, good_events("b", T10, 10), "seg-0002")
    lake.convert()
    path = lake.lake / "raw/tenant=shop/level=low/year=2026/month=03/day=10/seg-0002.parquet"
    path.write_bytes(b"overwritten by something else")
    write_raw(lake.lake, good_events("c", T10, 10), "seg-0003")
    summary = lake.convert()
    assert [q.key for q in summary.quarantined] == ["raw/tenant=shop/level=low/year=2026/month=03/day=10/seg-0002.parquet"]
    assert Counter(r["anonymous_id"] for r in lake.rows("events")) == {"a": 10, "c": 10}


def test_the_command_prints_quarantined_files_and_exits_3(tmp_path, capsys):
    from test_convert_cli import config_file

    cfg = config_file(tmp_path)
    write_raw(tmp_path / "data" / "lake", [event("a", T10)], "seg-0001")
    (tmp_path / "data/lake/raw/tenant=shop/level=mid/year=2026/month=03/day=10/broken.parquet").write_bytes(b"nope")
    assert cli.main(["convert", "--config", cfg, "--no-progress"]) == EXIT_QUARANTINED
    out = capsys.readouterr().out
    assert "converted 1 new raw file(s): 1 events" in out
    assert "quarantined 1 unreadable raw file(s)" in out
    assert "raw/tenant=shop/level=mid/year=2026/month=03/day=10/broken.parquet: unreadable Parquet footer" in out
    assert cli.main(["convert", "--config", cfg, "--no-progress"]) == 0  # it is out of raw/: the next run is clean


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.one_of(st.none(), st.floats(0.0, 0.999)),
       flips=st.lists(st.tuples(st.floats(0.0, 0.999), st.integers(1, 255)), max_size=6))
@example(cut=None, flips=[(0.62109375, 1)])  # found by this test: pyarrow reads the file, DuckDB does not
def test_whatever_happens_to_a_file_it_is_converted_or_quarantined_and_the_rest_converts(tmp_path_factory, scratch, cut, flips):
    """Any cut and any flipped bytes: the run never fails, the good file's events are there once,
    and the damaged file is either quarantined or recorded as converted (damage that still reads,
    e.g. a flipped digit in a URL, is the file's content as far as anyone can tell)."""
    root = tmp_path_factory.mktemp("prop")
    lake = Lake(root, "duckdb", scratch)
    write_raw(lake.lake, good_events("good", T10, 30), "seg-0001")
    [path] = write_raw(lake.lake, good_events("hurt", T10 + 600_000, 200), "seg-0002")
    data = bytearray(path.read_bytes())
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    if cut is not None:
        data = data[: int(cut * len(data))]
    path.write_bytes(bytes(data))

    summary = lake.convert()
    key = path.relative_to(lake.lake).as_posix()
    events = lake.rows("events")
    assert sum(1 for r in events if r["anonymous_id"] == "good") == 30
    assert len({r["event_id"] for r in events}) == len(events)
    converted = {r["raw_key"] for r in lake.rows("converted_files")}
    assert (key in converted) != (key in {q.key for q in summary.quarantined})
    if key in converted:  # at most its rows (a flipped timestamp can move an event out of the day)
        assert len(events) - 30 <= pq.read_metadata(path).num_rows
