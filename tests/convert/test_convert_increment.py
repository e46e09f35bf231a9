"""The incremental path: a few new raw files rewrite only their people's rows, and the tables
come out row for row as a from-scratch ``convert --full`` of the same raw lake makes them."""

from __future__ import annotations

import shutil
from collections import Counter

import pyarrow.parquet as pq
import pytest
from convert_lake import Lake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawlake import DAY, HOUR, MIN, event, ms, write_raw
from scenarios import random_events

from beaconlake.convert import buckets
from beaconlake.convert.catalog import TableStore, local_path

KEYS = {"events": ("tenant", "event_id"), "sessions": ("tenant", "session_id"),
        "pageviews": ("tenant", "page_view_id"), "high_level_events": ("tenant", "event_id")}
SMALL_BUCKETS = {"event_bucket_raw_kb": 16}  # the test lake's days get several buckets
T11 = ms("2026-03-11T00:00:00")


def base_lake(root, scratch, kind: str = "duckdb") -> tuple[Lake, list[dict]]:
    lake = Lake(root, kind, scratch, convert_cfg=SMALL_BUCKETS)
    events, copies = random_events(seed=21, visitors=80, days=3)
    write_raw(lake.lake, events, "seg-0001")
    write_raw(lake.lake, copies, "seg-0002")
    lake.convert()
    return lake, events


def same_as_full(lake: Lake, tmp_path, name: str) -> None:
    full = Lake(tmp_path / f"full-{name}", "duckdb", lake.scratch, convert_cfg=SMALL_BUCKETS)
    shutil.copytree(lake.lake, full.lake)
    full.convert(full=True)
    for table, key in KEYS.items():
        mine, theirs = lake.rows(table, key), full.rows(table, key)
        assert len(mine) == len(theirs), (name, table)
        for a, b in zip(mine, theirs, strict=True):
            assert a == b, (name, table, {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)})


def bucket_files_hold_their_bucket(store: TableStore) -> None:
    for task in store.table("events").scan().plan_files():
        kind = buckets.of_path(task.file.file_path)
        assert kind is not None, task.file.file_path  # every file has the layout
        if kind == buckets.DELTA:
            continue
        n, _b = buckets.split_id(kind)
        ids = set(pq.read_table(local_path(task.file.file_path), columns=["anonymous_id"]).column(0).to_pylist())
        assert {buckets.bucket_id(a, n) for a in ids} == {kind}


def person(events: list[dict], anon: str) -> list[dict]:
    return sorted((e for e in events if e["anonymous_id"] == anon), key=lambda e: e["event_ts"])


def test_small_deliveries_rewrite_only_their_people_and_match_a_full_convert(tmp_path, scratch):
    lake, events = base_lake(tmp_path / "inc", scratch)
    people = sorted({e["anonymous_id"] for e in events if T11 <= e["event_ts"] < T11 + DAY})
    a, b, c = (person(events, p) for p in people[:3])
    waves = {
        # new events a few seconds after a visitor's last one: appended, nothing rewritten
        "extend": [event(a[-1]["anonymous_id"], a[-1]["event_ts"] + 5000, "click", "low", url=a[-1]["url"]),
                   event("newcomer", T11 + 13 * HOUR)],
        # an identify: the visitor's rows get a stitched user, so their bucket is rewritten
        "identify": [event(b[-1]["anonymous_id"], b[-1]["event_ts"] + 9000, "identify", user_id="u-77")],
        # a late event between two sessions of a visitor, received much later
        "late": [event(c[0]["anonymous_id"], c[0]["event_ts"] - 20 * MIN, received_at=c[0]["received_at"] + DAY)],
        # a copy of a committed event received earlier (it wins), and one received later (it loses)
        "copies": [{**a[0], "received_at": a[0]["received_at"] - 1000, "title": "earlier copy"},
                   {**b[0], "received_at": b[0]["received_at"] + 1000, "title": "later copy"}],
        # the same event id under another anonymous id: still one event
        "other-person": [{**c[-1], "anonymous_id": "impostor", "received_at": c[-1]["received_at"] + 5}],
        # just before midnight, and its copy just after (clock correction)
        "midnight": [event("owl", T11 + DAY - 100, event_id="owl-1"),
                     event("owl", T11 + DAY + 100, event_id="owl-1", received_at=T11 + DAY + 900)],
    }
    for i, (name, wave) in enumerate(waves.items()):
        write_raw(lake.lake, wave, f"seg-w{i:02d}")
        summary = lake.convert()
        assert summary.incremental == 1, name
        same_as_full(lake, tmp_path, name)
    bucket_files_hold_their_bucket(lake.store())
    ids = Counter(r["event_id"] for r in lake.rows("events"))
    assert max(ids.values()) == 1


def test_appending_writes_only_the_new_rows(tmp_path, scratch):
    lake, events = base_lake(tmp_path, scratch)
    before = {t.file.file_path for t in lake.store().table("events").scan().plan_files()}
    last = max((e for e in events if e["event_ts"] < T11 + DAY), key=lambda e: e["event_ts"])
    write_raw(lake.lake, [event(last["anonymous_id"], last["event_ts"] + 2000, "click", "low")], "seg-0003")
    assert lake.convert().incremental == 1
    after = {t.file.file_path for t in lake.store().table("events").scan().plan_files()}
    assert before <= after  # no events file replaced
    [added] = after - before
    assert buckets.of_path(added) == buckets.DELTA and pq.read_metadata(local_path(added)).num_rows == 1


def test_a_change_rewrites_only_the_changed_persons_bucket(tmp_path, scratch):
    lake, events = base_lake(tmp_path, scratch)
    day11 = sorted({e["anonymous_id"] for e in events if T11 <= e["event_ts"] < T11 + DAY})
    who, carries_on = person(events, day11[0]), person(events, day11[1])
    files = lambda: {t.file.file_path for t in lake.store().table("events").scan().plan_files()}  # noqa: E731
    before = files()
    write_raw(lake.lake, [event(who[0]["anonymous_id"], who[0]["event_ts"] + 10, "identify", user_id="u-1"),
                          event(carries_on[-1]["anonymous_id"], carries_on[-1]["event_ts"] + 3000, "click", "low")],
              "seg-0003")
    assert lake.convert().incremental == 1
    gone = before - files()
    n = buckets.split_id(buckets.of_path(next(iter(gone))))[0]
    days = {e["event_date"] for e in lake.rows("events") if e["anonymous_id"] == who[0]["anonymous_id"]}
    # the identified visitor's bucket, on the days they have events; everyone else's files stay
    assert {(buckets.of_path(p), p.split("event_date=")[1][:10]) for p in gone} == {
        (buckets.bucket_id(who[0]["anonymous_id"], n), str(d)) for d in days}
    assert {r["stitched_user"] for r in lake.rows("events") if r["anonymous_id"] == who[0]["anonymous_id"]} == {"u-1"}
    same_as_full(lake, tmp_path, "one-bucket")


def test_appended_files_are_compacted_into_buckets(tmp_path, scratch):
    lake, events = base_lake(tmp_path, scratch)
    last = max((e for e in events if e["event_ts"] < T11 + DAY), key=lambda e: e["event_ts"])
    counts = []
    for i in range(8):  # each run appends; once they hold a tenth of the day's bytes, a change compacts them
        write_raw(lake.lake, [event(last["anonymous_id"], last["event_ts"] + (i + 1) * 2000, "click", "low")],
                  f"seg-a{i:02d}")
        assert lake.convert().incremental == 1
        counts.append(sum(1 for t in lake.store().table("events").scan().plan_files()
                          if buckets.of_path(t.file.file_path) == buckets.DELTA))
    assert max(counts) >= 2 and 0 in counts[1:] and counts[-1] < 8, counts
    same_as_full(lake, tmp_path, "compacted")


def test_a_big_delivery_or_a_redelivered_file_rewrites_whole_days(tmp_path, scratch):
    lake, events = base_lake(tmp_path, scratch)
    more, _ = random_events(seed=99, visitors=60, days=3)
    write_raw(lake.lake, more, "seg-0003")  # about as much again: cheaper to rewrite
    assert lake.convert().incremental == 0
    write_raw(lake.lake, [e for e in more if e["level"] == "low"][:5], "seg-0003")  # seg-0003 again, other content
    assert lake.convert().incremental == 0
    same_as_full(lake, tmp_path, "fallback")


def test_a_crash_before_the_record_is_redone_without_duplicates(tmp_path, scratch, monkeypatch):
    lake, events = base_lake(tmp_path, scratch)
    people = sorted({e["anonymous_id"] for e in events if T11 <= e["event_ts"] < T11 + DAY})
    b = person(events, people[1])
    write_raw(lake.lake, [event(b[-1]["anonymous_id"], b[-1]["event_ts"] + 9000, "identify", user_id="u-9"),
                          event(b[-1]["anonymous_id"], b[-1]["event_ts"] + 19000, "click", "low")], "seg-0003")

    def crash(self, rows, run_id):
        raise OSError("disk full")

    monkeypatch.setattr(TableStore, "record_converted", crash)
    with pytest.raises(OSError):
        lake.convert()
    monkeypatch.undo()
    assert lake.convert().incremental == 1  # the same files again: the history holds their events already
    same_as_full(lake, tmp_path, "redone")


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["extend", "late", "copy", "identify", "new"]), st.integers(0, 10**6)),
                min_size=1, max_size=3))
def test_any_small_deliveries_match_a_full_convert(tmp_path_factory, scratch, waves):
    root = tmp_path_factory.mktemp("inc-prop")
    lake, events = base_lake(root, scratch)
    seen = list(events)
    for i, (kind, pick) in enumerate(waves):
        who = person(seen, seen[pick % len(seen)]["anonymous_id"])
        anchor = who[pick % len(who)]
        wave = {
            "extend": [event(anchor["anonymous_id"], who[-1]["event_ts"] + 1000 + pick % 3_000_000, "click", "low")],
            "late": [event(anchor["anonymous_id"], anchor["event_ts"] - 1000 - pick % 7_200_000,
                           received_at=anchor["received_at"] + DAY)],
            "copy": [{**anchor, "received_at": anchor["received_at"] + (pick % 5000) - 2500, "title": f"copy {i}"}],
            "identify": [event(anchor["anonymous_id"], anchor["event_ts"] + 10, "identify", user_id=f"u-{pick % 7}")],
            "new": [event(f"new-{pick}", T11 + pick % DAY), event(f"new-{pick}", T11 + pick % DAY + MIN, "click", "low")],
        }[kind]
        write_raw(lake.lake, wave, f"seg-p{i:02d}")
        seen += wave
        lake.convert()
    same_as_full(lake, root, "property")
