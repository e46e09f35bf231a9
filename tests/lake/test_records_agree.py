"""Lake delivery and the realtime feed agree on every event of arbitrary spool records.

Both read records through ``lake/records.py``; this checks the promise end to end, on what
delivery really writes (Parquet files through the storage seam, after Arrow has had its say)
and what the feed really yields: the same events, with the same ids and the same clock-skew
corrected ``event_ts``; an accepted event the feed skips is one delivery keeps in
``rejected`` as undeliverable, and the other way round."""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from beaconlake import config
from beaconlake.ingest import spool
from beaconlake.ingest.deliver import Deliverer
from beaconlake.lake.records import _canonical, _canonical_ids, lake_event_id, record_events
from beaconlake.realtime.feed import segment_events
from beaconlake.types import SpoolRecord, UserAgent
from support import read_lake

NOW = 1_764_201_600_000
KEYS = {"write_key": "wk_aaaaaaaaaaaaaaaaaaaa", "read_key": "rk_aaaaaaaaaaaaaaaaaaaa"}
MS = st.one_of(st.integers(NOW - 10**9, NOW + 10**9), st.integers(-(2**63), 2**63 - 1),
               st.sampled_from([0, 253_402_300_799_999, 253_402_300_800_000, -1]))
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=6)
UUIDS = st.uuids().map(str)


@st.composite
def event(draw, anon: str) -> bytes:
    """One event's bytes: mostly what a tracker sends, with every field sometimes hostile."""
    ev = {"level": draw(st.sampled_from(["low", "mid", "high", "high", "LOW", "", 3])), "name": draw(st.sampled_from(["page_view", "x"])),
          "anonymous_id": anon}
    for field, values in [
        ("event_id", st.one_of(UUIDS, UUIDS.map(str.upper), st.just("not-a-uuid"), st.just(""))),
        ("client_ts", MS), ("user_id", st.text(max_size=5)), ("session_id", st.text(max_size=5)),
        ("url", st.text(max_size=10)), ("props", JSON), ("context", JSON),
    ]:
        if draw(st.booleans()):
            ev[field] = draw(values)
    data = msgspec.json.encode(ev)
    damage = draw(st.sampled_from([None] * 6 + ["utf8", "surrogate", "unbalanced", "deep"]))
    if damage == "utf8":
        data = data.replace(b'"anonymous_id"', b'"anonymous_id\xff"', 1) if draw(st.booleans()) else data[:-1] + b',"props":"\xc3\x28"}'
    elif damage == "surrogate":
        data = data[:-1] + b',"title":"\\ud800"}'
    elif damage == "unbalanced":
        data = data[:-1]
    elif damage == "deep":
        data = data[:-1] + b',"context":' + b"[" * 2000 + b"]" * 2000 + b"}"
    return data


@st.composite
def record(draw, rec_no: int) -> bytes:
    if draw(st.integers(0, 15)) == 0:
        return draw(st.binary(max_size=40))  # not a record at all
    n = draw(st.integers(0, 5))
    events = [draw(event(f"r{rec_no}e{i}")) for i in range(n)]
    body = draw(st.sampled_from([b'{"sent_at":1,"events":[%s]}' % b",".join(events)] * 4 + [b"", b"\xffnot json"]))
    received_at = draw(MS)
    sent_at = received_at - draw(st.integers(-5000, 5000)) if draw(st.booleans()) else draw(MS)
    sent_at = min(max(sent_at, -(2**63)), 2**63 - 1)  # what msgpack can hold
    rec = SpoolRecord(draw(st.sampled_from(["t1", "t1", "t1", "T1", "../x"])), received_at, sent_at, None, None,
                      UserAgent(), body, draw(st.one_of(st.none(), st.lists(st.integers(-1, n + 1), max_size=6))), [])
    return msgspec.msgpack.encode(rec)


def where(anon: str) -> tuple[int, int]:
    rec_no, idx = re.fullmatch(r"r(\d+)e(\d+)", anon).groups()
    return int(rec_no), int(idx)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.integers(0, 6).flatmap(lambda n: st.tuples(*[record(i) for i in range(n)])))
def test_delivery_and_the_realtime_feed_agree_on_every_event(payloads):
    with tempfile.TemporaryDirectory() as tmp:
        s = config.parse({"tenants": [{"id": "t1", **KEYS}], "realtime": {"enabled": False}}, Path(tmp), environ={})
        path = spool.write_sealed_segment(s.spool_path, "1764201600000-agree-000001", list(payloads))
        fed = list(segment_events(path))  # the realtime consumer reads a segment before its delivery
        result = Deliverer(s).deliver_segment(path)
        assert not result.parked
        raw = read_lake(s.data_path)
        rejected = read_lake(s.data_path, "rejected")

    seen = {where(ev.anonymous_id): (tenant, ev.event_id, ev.event_ts, ev.client_ts, ev.level, ev.name, ev.props,
                                     ev.context) for tenant, ev in fed}
    assert len(seen) == len(fed), "the feed yielded an event twice"
    stored = Counter((where(r["anonymous_id"]), (r["tenant"], r["event_id"], r["event_ts"], r["client_ts"], r["level"],
                                                 r["name"], r["props"], r["context"])) for r in raw)
    assert stored == Counter(seen.items()), "delivery and the feed disagree on which events, or on their fields"
    undeliverable = {(int(re.match(r"spool record (\d+)", r["error"]).group(1)), r["index"])
                     for r in rejected if r["reason"] == "undeliverable"}
    assert not undeliverable & set(seen), "an event both fed to realtime and refused by the lake"
    assert result.events == len(fed)


# Pieces of ids that could fool a check of a record's ids joined by commas: whole UUIDs, commas,
# UUIDs cut short or run on at either end, capitals, a dash moved, a digit that is a dash, a comma
# or a letter past ASCII.
ID_PIECES = st.one_of(UUIDS, UUIDS.map(str.upper), UUIDS.map(lambda u: u[:35]), UUIDS.map(lambda u: u + "0"),
                      UUIDS.map(lambda u: "0" + u),
                      st.tuples(UUIDS, st.sampled_from([8, 13, 18, 23])).map(lambda t: t[0][:t[1]] + t[0][t[1] + 1] + "-" + t[0][t[1] + 2:]),
                      st.tuples(UUIDS, st.sampled_from("-,é\ud800")).map(lambda t: t[0][:2] + t[1] + t[0][3:]),
                      st.sampled_from([",", "-", "0", "", "g", "é", "\ud800"]))


@settings(max_examples=500, deadline=None)
@example(["e3\ud80070682-c209-4cac-629f-6fbed82c07cd"])  # the length and the places of a UUID; no UTF-8
@given(st.lists(st.lists(ID_PIECES, min_size=1, max_size=3).map("".join), min_size=1, max_size=12))
def test_a_record_of_event_ids_is_taken_as_canonical_only_when_each_id_is(ids):
    assert _canonical_ids(ids) == all(_canonical(i) for i in ids)
    # and whatever the check said, what the lake stores is each id in its canonical spelling
    # (json escapes a lone surrogate, which msgspec cannot encode: the door may still have let one in)
    body = json.dumps({"sent_at": NOW, "events": [{"level": "low", "name": "x", "anonymous_id": "a",
                                                   "event_id": i} for i in ids]}).encode()
    rec = SpoolRecord("t1", NOW, NOW, None, None, UserAgent(), body, None, [])
    events, failed = record_events(rec, "seg", 0)
    for ev in events:
        assert _canonical(ev.event_id) and ev.event_id == lake_event_id(ids[ev.index], "seg", 0, ev.index)
    assert sorted([ev.index for ev in events] + [f[0] for f in failed]) == list(range(len(ids)))
