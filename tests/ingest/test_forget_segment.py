"""Scrubbing a person out of sealed spool segments (ingest/forget.py): the lake gets exactly
what it would have got, minus the person's events, with the same event ids."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from beaconlake.ingest.forget import scrub_segment, scrub_spool
from beaconlake.ingest.spool import write_sealed_segment
from beaconlake.lake import segment
from beaconlake.realtime.feed import segment_events
from beaconlake.types import Rejection, SpoolRecord, UserAgent

ENC = msgspec.msgpack.Encoder()
PEOPLE = ["ann", "bob", "cy", "dee"]


def record(tenant: str, events: list[dict], accepted: list[int] | None, rejected: list[Rejection]) -> bytes:
    body = msgspec.json.encode({"sent_at": 1_700_000_000_000, "events": events})
    return ENC.encode(SpoolRecord(tenant, 1_700_000_000_500, 1_700_000_000_000, "1.2.3.0", "ua", UserAgent(),
                                  body, accepted, rejected))


event = st.fixed_dictionaries(
    {"level": st.just("mid"), "name": st.sampled_from(["page_view", "click"]), "anonymous_id": st.sampled_from(PEOPLE),
     "client_ts": st.integers(1_699_999_000_000, 1_700_000_000_000)},
    optional={"user_id": st.sampled_from(["u-ann", "u-bob"]), "event_id": st.uuids().map(str)},
)
a_record = st.tuples(
    st.sampled_from(["shop", "other"]),
    st.lists(event, min_size=1, max_size=6),
    st.booleans(),
    st.lists(st.sampled_from(PEOPLE), max_size=2),
)


@settings(max_examples=60, deadline=None)
@given(records=st.lists(a_record, min_size=1, max_size=5), forgotten=st.sets(st.sampled_from([*PEOPLE, "u-ann"]), min_size=1))
def test_the_lake_gets_the_same_events_minus_the_person(tmp_path_factory, records, forgotten):
    root = tmp_path_factory.mktemp("spool")
    payloads = []
    for tenant, events, all_accepted, rejected_people in records:
        accepted = None if all_accepted else list(range(0, len(events), 2))
        rejections = [Rejection(9, "invalid_event", "bad", f'{{"anonymous_id": "{p}"}}') for p in rejected_people]
        payloads.append(record(tenant, events, accepted, rejections))
    path = write_sealed_segment(root, "1700000000000-test", payloads)
    before = list(segment_events(path))

    def drops(tenant, anon, user):
        return tenant == "shop" and (anon in forgotten or user in forgotten)

    removed = scrub_segment(path, {"shop"}, drops, frozenset(forgotten))
    after = list(segment_events(path))
    expected = [(t, e) for t, e in before if not drops(t, e.anonymous_id, e.user_id)]
    assert after == expected  # same events, same ids (derived ones too), same order
    scan = segment.read(path)
    assert not scan.corrupt and len(scan.frames) == len(payloads)
    gone_rejections = sum(1 for tenant, _e, _a, people in records if tenant == "shop"
                          for p in people if p in forgotten)
    assert removed == len(before) - len(after) + gone_rejections


def test_a_damaged_segment_is_left_alone_and_named(tmp_path):
    path = write_sealed_segment(tmp_path, "1700000000000-bad", [record("shop", [{"level": "mid", "name": "x",
                                                                                 "anonymous_id": "ann"}], None, [])])
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF
    path.write_bytes(bytes(data))
    removed, damaged = scrub_spool(tmp_path, {"shop"}, lambda t, a, u: a == "ann")
    assert (removed, damaged) == (0, [path.name])
    assert path.read_bytes() == bytes(data)
