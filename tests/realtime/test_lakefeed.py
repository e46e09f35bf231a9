"""The lake detector (realtime/lakefeed.py): one detector over every node's raw files.

The invariant, stated as a property: whatever the split of a set of events into raw files
(nodes, batches), whatever order and time those files reach the lake, and wherever the detector
is restarted (from its checkpoint, after a crash before or after its checkpoint), the matches it
publishes are exactly those of one detector fed the in-time events in one stream in event-time
order, each published once; the events whose file came after the watermark passed them are
counted as late, and nothing else is.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import hypothesis
import msgspec
import pyarrow.dataset as ds
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lakehelp import DEFINITIONS, T0, Lake, event, reference, write_raw

from beaconlake.backends.coordination import LeaseLost
from beaconlake.backends.coordination.local import LocalCoordination
from beaconlake.backends.highlevel import open_highlevel
from beaconlake.config import NodeSettings
from beaconlake.errors import StorageError
from beaconlake.lake import layout, privacy
from beaconlake.realtime.emit import OWN_MARK
from beaconlake.realtime.lakefeed import CHECKPOINT_KEY, LEASE_NAME, Checkpoint, LakeDetector
from beaconlake.realtime.lakerun import run
from beaconlake.telemetry import Metrics

S = 1000
LATENESS = 30 * S
POLL = 5 * S
NAMES = ["product_view", "add_to_cart", "checkout", "search", "page_view"]
READ = set(NAMES) - {"page_view"}  # the names the definitions mention


class FaultyStorage:
    """The real local storage, failing the next write of a match file when told to (a crash
    after the checkpoint, before the matches are published)."""

    def __init__(self, storage) -> None:
        self.inner, self.fail_match_put = storage, False

    def put(self, key: str, data: bytes) -> None:
        if self.fail_match_put and OWN_MARK in key:
            self.fail_match_put = False
            raise StorageError(f"injected: cannot write {key}")
        self.inner.put(key, data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class FaultyCoordination(LocalCoordination):
    """The real local coordination backend, failing the next fenced write when told to (a crash
    before the checkpoint)."""

    fail_next_put = False

    def put(self, key, value, lease=None):
        if self.fail_next_put and key == CHECKPOINT_KEY:
            self.fail_next_put = False
            raise OSError("injected: the coordination store is gone")
        super().put(key, value, lease)


def published(storage) -> list[dict]:
    """Every row of the match files the detector wrote to the raw lake."""
    keys = [k for k in storage.list(layout.raw_prefix()) if OWN_MARK in k]
    if not keys:
        return []
    fs, root = storage.arrow_filesystem()
    return ds.dataset([f"{root}/{k}" for k in keys], filesystem=fs, format="parquet").to_table().to_pylist()


person_events = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(NAMES), st.integers(0, 150), st.sampled_from(["a", "b", None]),
              st.sampled_from([5, 20])),
    min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=person_events, data=st.data())
def test_matches_equal_one_detector_over_one_stream(raw, data):
    events = []
    for person, name, secs, category, price in raw:
        props = {k: v for k, v in (("category", category), ("price", price)) if v is not None}
        events.append(event(f"p{person}", name, T0 + secs * S + len(events), **props))
    # the browser reports some matches of its own (the events it names, a little after the last)
    reports = data.draw(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(DEFINITIONS), st.integers(1, 3),
                                           st.integers(0, 30_000)), max_size=3), label="browser reports")
    for person, definition, count, after_ms in reports:
        steps = {step["name"] for step in definition["steps"]}
        named = [e for e in events if e["anonymous_id"] == f"p{person}" and e["name"] in steps][:count]
        if named:
            events.append(event(f"p{person}", definition["name"], max(e["client_ts"] for e in named) + after_ms,
                                level="high", definition=definition["name"], source="browser",
                                matched_event_ids=[e["event_id"] for e in named]))
    # split over nodes and batches: each file is a random group of events, reaching the lake at a
    # random time after its last event (a delivery interval), sometimes later than the lateness
    files = data.draw(st.lists(st.integers(0, 5), min_size=len(events), max_size=len(events)), label="file of each")
    delays = data.draw(st.lists(st.one_of(st.integers(0, 20), st.integers(0, 45)), min_size=6, max_size=6),
                       label="delivery delay secs")  # mostly within the lateness (30 s), sometimes not
    restarts = data.draw(st.sets(st.integers(0, 70), max_size=4), label="restart before step")
    crash_before = data.draw(st.sets(st.integers(0, 70), max_size=3), label="crash before checkpoint at step")
    crash_after = data.draw(st.sets(st.integers(0, 70), max_size=3), label="crash after checkpoint at step")
    groups = {}
    for f, e in zip(files, events):
        groups.setdefault(f, []).append(e)
    arrivals = sorted((max(e["client_ts"] for e in group) + delays[f] * S, f) for f, group in groups.items())

    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(Path(tmp), lateness_secs=LATENESS / S)
        storage = FaultyStorage(lake.storage)
        coordination = FaultyCoordination(lake.settings.run_path, "node-a")
        now = T0 - LATENESS  # detection starts before the first event: nothing is history
        lease = coordination.acquire(LEASE_NAME, 15)
        metrics = Metrics()
        feed = LakeDetector(lake.settings, storage, coordination, lease, lake.index, metrics=metrics, clock=lambda: now)
        in_time, late, arrived, step = [], 0, 0, 0
        end = T0 + 400 * S
        while now <= end:
            watermark = feed.ckpt.watermark_ms
            while arrived < len(arrivals) and arrivals[arrived][0] <= now:
                f = arrivals[arrived][1]
                write_raw(lake.storage, f"{arrivals[arrived][0]:013d}-node{f % 2}-{f:06d}", groups[f])
                for e in groups[f]:  # what the watermark already passed when its file arrives is late
                    (in_time if e["client_ts"] > watermark else []).append(e)
                    # what the detector reads: the names the definitions mention, and the browser's reports
                    late += e["client_ts"] <= watermark and (e["name"] in READ or e["level"] == "high")
                arrived += 1
            if step in restarts:  # a restart, or another node taking over: only the checkpoint is kept
                lease.release()
                lease = coordination.acquire(LEASE_NAME, 15)
                feed = LakeDetector(lake.settings, storage, coordination, lease, lake.index, metrics=metrics,
                                    clock=lambda: now)
            coordination.fail_next_put = step in crash_before
            storage.fail_match_put = step in crash_after
            try:
                feed.step(now)
            except (OSError, StorageError):  # what run() does: start again from the checkpoint
                feed = LakeDetector(lake.settings, storage, coordination, lease, lake.index, metrics=metrics,
                                    clock=lambda: now)
            step += 1
            now += POLL
        feed.step(now + 3600 * S)  # everything due: no wait is that long
        expected = reference(lake.settings, in_time)
        hypothesis.event("matches" if expected else "no match")
        hypothesis.event("late events" if late else "all in time")
        hypothesis.event("browser reports" if any(e["level"] == "high" for e in in_time) else "no report")
        rows = published(lake.storage)
        assert sorted(r["event_id"] for r in rows) == sorted(expected)  # each match once, no other
        got = {r["event_id"]: (r["name"], r["anonymous_id"]) for r in rows}
        assert got == {k: v[:2] for k, v in expected.items()}
        indexed = lake.index.search("shop", None, None, None, 10_000)
        assert {h.event_id: (h.name, tuple(h.matched_event_ids), h.event_ts, h.source) for h in indexed} == {
            k: (v[0], v[2], v[3], "server") for k, v in expected.items()}
        counted = metrics.value("beaconlake_sequences_late_events_total")
        # a step that crashed before its checkpoint counted its late events, and its redo again
        assert counted == late if not crash_before else counted >= late
        lake.close()


def test_late_file_counted_and_left_out(tmp_path):
    """A file that reaches the lake after the watermark passed its events: counted, not fed."""
    lake = Lake(tmp_path, lateness_secs=30)
    coordination = lake.coordination
    lease = coordination.acquire(LEASE_NAME, 15)
    now = T0
    feed = LakeDetector(lake.settings, lake.storage, coordination, lease, lake.index, clock=lambda: now)
    on_time = [event("p1", "search", T0 + 10 * S), event("p1", "product_view", T0 + 12 * S)]
    write_raw(lake.storage, f"{T0 + 12 * S:013d}-n1-000001", on_time)
    result = feed.step(T0 + 60 * S)  # watermark T0 + 30 s
    assert result.late == 0 and result.fed == 2
    assert [m.anonymous_id for m in result.matches] == ["p1"]  # due: T0 + 12 s + the grace (5 s)
    late = [event("p2", "search", T0 + 5 * S), event("p2", "product_view", T0 + 8 * S)]
    write_raw(lake.storage, f"{T0 + 8 * S:013d}-n2-000001", late)
    result = feed.step(T0 + 120 * S)
    assert result.late == 2 and result.fed == 0
    assert feed.metrics.value("beaconlake_sequences_late_events_total") == 2
    assert result.matches == []  # p2's events would have matched, had they come in time


def test_fenced_checkpoint_after_losing_the_lease_is_refused(tmp_path):
    lake = Lake(tmp_path)
    coordination = lake.coordination
    old = coordination.acquire(LEASE_NAME, 15)
    feed = LakeDetector(lake.settings, lake.storage, coordination, old, lake.index, clock=lambda: T0)
    write_raw(lake.storage, f"{T0:013d}-n1-000001",
              [event("p1", "search", T0 + S), event("p1", "product_view", T0 + 2 * S)])
    feed.step(T0)
    saved = coordination.get(CHECKPOINT_KEY)
    old.release()
    new = coordination.acquire(LEASE_NAME, 15)
    assert new.token > old.token
    with pytest.raises(LeaseLost):
        coordination.put(CHECKPOINT_KEY, {"watermark_ms": 0}, lease=old)
    with pytest.raises(LeaseLost):
        feed.step(T0 + 300 * S)  # the former holder's step: its checkpoint is refused, nothing published
    assert coordination.get(CHECKPOINT_KEY) == saved
    assert published(lake.storage) == []
    successor = LakeDetector(lake.settings, lake.storage, coordination, new, lake.index, clock=lambda: T0)
    result = successor.step(T0 + 300 * S)
    assert [m.definition for m in result.matches] == ["searched_then_viewed"]
    assert len(published(lake.storage)) == 1


def test_the_loop_hands_over_to_another_jobs_node_without_duplicates(tmp_path):
    """Two detector loops (two jobs nodes) on one coordination store: one detects at a time; when
    it stops, the other takes the lease and goes on from the checkpoint. Every match once."""
    lake = Lake(tmp_path, grace_secs=0, lateness_secs=4, lake_poll_interval_secs=0.1)
    base = lake.settings
    nodes = {name: msgspec.structs.replace(base, node=NodeSettings(id=name)) for name in ("jobs-1", "jobs-2")}
    stops = {name: threading.Event() for name in nodes}
    threads = {name: threading.Thread(target=run, args=(nodes[name], stops[name])) for name in nodes}

    def person(anon: str) -> list[dict]:
        now = time.time_ns() // 1_000_000
        return [event(anon, "search", now - 3000), event(anon, "product_view", now - 2000)]

    def server_matches() -> list[str]:
        return sorted(r["anonymous_id"] for r in published(lake.storage))

    def wait(condition, secs=20.0):
        deadline = time.monotonic() + secs
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.1)
        return condition()

    try:
        handover(lake, threads, stops, person, server_matches, wait)
    finally:
        for stop in stops.values():
            stop.set()
        for thread in threads.values():
            if thread.is_alive():
                thread.join(10)
    assert server_matches() == ["p1", "p2", "p3"]
    index = open_highlevel(base.highlevel)
    assert index.counts("shop", None, None, None) == {"searched_then_viewed": 3}
    index.close()


def handover(lake, threads, stops, person, server_matches, wait):
    threads["jobs-1"].start()
    assert wait(lambda: lake.coordination.holder(LEASE_NAME) is not None)
    threads["jobs-2"].start()  # a second jobs node: waits for the lease
    write_raw(lake.storage, f"{time.time_ns() // 1_000_000:013d}-c1-000001", person("p1"))
    write_raw(lake.storage, f"{time.time_ns() // 1_000_000:013d}-c2-000001", person("p2"))
    assert wait(lambda: server_matches() == ["p1", "p2"])  # the events' time + lateness (4 s)
    first = lake.coordination.holder(LEASE_NAME)
    stops[first["holder"]].set()  # the active one stops (a node going away releases; a dead one expires)
    threads[first["holder"]].join(10)
    assert wait(lambda: (lake.coordination.holder(LEASE_NAME) or {}).get("token", 0) > first["token"])
    second = lake.coordination.holder(LEASE_NAME)
    assert second["holder"] != first["holder"]
    write_raw(lake.storage, f"{time.time_ns() // 1_000_000:013d}-c1-000002", person("p3"))
    assert wait(lambda: server_matches() == ["p1", "p2", "p3"])
    time.sleep(1.0)  # a few more steps: nothing is published twice


def held_people(coordination) -> set[str]:
    """Who the checkpointed detector state holds events of."""
    saved = msgspec.convert(coordination.get(CHECKPOINT_KEY), Checkpoint)
    return set(msgspec.msgpack.decode(saved.detector)["tenants"].get("shop", {}).get("people", {}))


def test_an_erasure_drops_the_person_from_the_detector_and_its_checkpoint(tmp_path):
    """A forgotten person's held events go at the next step, and their events in raw files not yet
    rewritten by the erasure job are not read: no match of theirs, others unaffected."""
    lake = Lake(tmp_path, lateness_secs=30)
    lake.settings.privacy.suppression_refresh_secs = 0
    lease = lake.coordination.acquire(LEASE_NAME, 15)
    feed = LakeDetector(lake.settings, lake.storage, lake.coordination, lease, lake.index, clock=lambda: T0)
    write_raw(lake.storage, f"{T0:013d}-n1-000001", [event("gone", "search", T0 + S), event("kept", "search", T0 + S)])
    feed.step(T0 + 40 * S)
    assert held_people(lake.coordination) == {"gone", "kept"}
    hasher = privacy.id_hasher(lake.storage, None)
    privacy.put(lake.storage, layout.suppress_key("shop", "req-1"),
                privacy.Suppression(request="req-1", id_hashes=[hasher("gone")], until_ms=2**62))
    write_raw(lake.storage, f"{T0 + 20 * S:013d}-n2-000001",
              [event("gone", "product_view", T0 + 20 * S), event("kept", "product_view", T0 + 20 * S)])
    feed.step(T0 + 50 * S)  # watermark T0 + 20 s: both product views fed, but not the forgotten one's
    assert held_people(lake.coordination) == {"kept"}
    result = feed.step(T0 + 300 * S)
    assert [m.anonymous_id for m in result.matches] == ["kept"]


def test_the_lake_detector_works_through_the_storage_seam_on_s3(tmp_path):
    """Raw files in an S3 bucket (moto's server, the real S3 client code): listed, read, and the
    matches written back to the bucket."""
    import boto3
    from support import moto_s3

    with moto_s3() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="lake-bucket")
        lake = Lake(tmp_path, storage={"type": "s3", "bucket": "lake-bucket", "prefix": "lake",
                                       "endpoint_url": endpoint, "access_key_id": "testing",
                                       "secret_access_key": "testing"})
        assert not lake.storage.capabilities.local_paths
        lease = lake.coordination.acquire(LEASE_NAME, 15)
        feed = LakeDetector(lake.settings, lake.storage, lake.coordination, lease, lake.index, clock=lambda: T0)
        events = [event("p1", "search", T0 + S), event("p1", "product_view", T0 + 3 * S)]
        write_raw(lake.storage, f"{T0 + S:013d}-n1-000001", events[:1])
        write_raw(lake.storage, f"{T0 + 3 * S:013d}-n2-000001", events[1:])  # another node's file
        result = feed.step(T0 + 60 * S)
        assert [(m.definition, m.event_ids) for m in result.matches] == [
            ("searched_then_viewed", [e["event_id"] for e in events])]
        assert [r["anonymous_id"] for r in published(lake.storage)] == ["p1"]
        assert not (tmp_path / "data" / "lake").exists()  # nothing went to a local folder


@pytest.mark.parametrize("report_after_secs", [3, 8])
def test_a_browser_report_cancels_by_its_event_time_not_by_the_batch(tmp_path, report_after_secs):
    """The grace (5 s here) counts in event time: a report within it cancels the server's match,
    a later one does not, even when both reach the detector in one step (where the wall-clock
    rule would cancel any match still waiting). So batching never changes what is emitted."""
    lake = Lake(tmp_path, lateness_secs=30)
    lease = lake.coordination.acquire(LEASE_NAME, 15)
    feed = LakeDetector(lake.settings, lake.storage, lake.coordination, lease, lake.index, clock=lambda: T0)
    search, view = event("p1", "search", T0 + S), event("p1", "product_view", T0 + 2 * S)
    report = event("p1", "searched_then_viewed", T0 + (2 + report_after_secs) * S, level="high",
                   definition="searched_then_viewed", source="browser",
                   matched_event_ids=[search["event_id"], view["event_id"]])
    write_raw(lake.storage, f"{T0:013d}-n1-000001", [search, view, report])
    result = feed.step(T0 + 100 * S)  # one step: all three, and the match's wait is over
    expected = reference(lake.settings, [search, view, report])
    assert sorted(m.event_id for m in result.matches) == sorted(expected)
    assert len(expected) == (0 if report_after_secs <= 5 else 1)


def test_matches_are_counted_and_windows_closed_under_the_lease(tmp_path):
    """With counters, the lake detector counts its matches in the statistics and closes windows;
    the closed-window marker is in the coordination store (no node's data_dir), written fenced."""
    from beaconlake.backends.counters import open_counters
    from beaconlake.realtime.lakefeed import CLOSED_KEY

    lake = Lake(tmp_path, lateness_secs=30)
    settings = lake.settings
    counters = open_counters(settings.counters, role="sequences", state_dir=settings.realtime_path,
                             retention_ms=settings.realtime.retention_hours * 3_600_000)
    lease = lake.coordination.acquire(LEASE_NAME, 15)
    now = time.time_ns() // 1_000_000
    feed = LakeDetector(settings, lake.storage, lake.coordination, lease, lake.index, counters, clock=lambda: now)
    write_raw(lake.storage, f"{now:013d}-n1-000001", [event("p1", "search", now - 50 * S),
                                                      event("p1", "product_view", now - 45 * S)])
    result = feed.step(now)
    assert [m.definition for m in result.matches] == ["searched_then_viewed"]
    rows = counters.query("shop", "searched_then_viewed", now - 3_600_000, now + 60_000, "hour", False)
    assert sum(r["count"] for r in rows) == 1
    until = lake.coordination.get(CLOSED_KEY)["until"]
    assert until <= now - settings.realtime.allowed_lateness_secs * 1000
    assert not (settings.realtime_path / "closed.json").exists()
    lease.release()
    with pytest.raises(LeaseLost):
        feed.closer.run(now + 3_600_000)  # a former holder cannot move the marker
    assert lake.coordination.get(CLOSED_KEY)["until"] == until
    counters.close()


def test_the_checkpoint_forgets_done_files_written_long_before_the_newest(tmp_path):
    """The checkpoint keeps the files of the last LISTING_MARGIN_MS of writes (and those still
    pending), not a whole day's; a forgotten file is neither read again nor taken for a late one."""
    import os

    from beaconlake.realtime.lakefeed import LISTING_MARGIN_MS

    lake = Lake(tmp_path, lateness_secs=30)
    lease = lake.coordination.acquire(LEASE_NAME, 15)
    feed = LakeDetector(lake.settings, lake.storage, lake.coordination, lease, lake.index, clock=lambda: T0)
    root = tmp_path / "data" / "lake"
    [old] = write_raw(lake.storage, f"{T0:013d}-n1-000001", [event("p1", "search", T0 + S)])
    assert feed.step(T0 + 40 * S).files_read == 1  # watermark T0 + 10 s
    [new] = write_raw(lake.storage, f"{T0 + 30 * S:013d}-n1-000002", [event("p1", "product_view", T0 + 30 * S)])
    written = os.stat(root / old).st_mtime
    os.utime(root / new, (written + LISTING_MARGIN_MS / 1000 + 60,) * 2)  # written 11 minutes later
    result = feed.step(T0 + 120 * S)
    assert result.files_read == 1 and result.late == 0
    assert [m.definition for m in result.matches] == ["searched_then_viewed"]
    assert set(lake.coordination.get(CHECKPOINT_KEY)["files"]) == {new}  # the old one is forgotten
    result = feed.step(T0 + 180 * S)
    assert result.files_read == 0 and result.late == 0 and result.matches == []  # not read again, not late
