"""Properties of the protocol doors, searched by Hypothesis: whatever a Segment or Snowplow
sender posts, every message ends up exactly once in the lake or in lake/rejected, the answer is
never a 5xx, and a message's event id does not depend on the request that carried it."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from door_harness import WRITE_KEY
from protocol_harness import JSON, ProtocolDoor, basic

from beaconlake.ingest.protocols.common import canonical_name
from beaconlake.ingest.protocols.segment import map_message
from beaconlake.types import NAME_MAX, NAME_PATTERN

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=30)
times = st.one_of(st.none(), st.just("2025-11-27T08:00:00.000Z"), st.just("2025-11-27T08:00:00+02:00"), st.text(max_size=12),
                  st.integers(0, 5_000_000_000_000))
segment_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "page", "screen", "identify", "group", "alias", "TRACK", "other"])},
    optional={
        "event": st.one_of(st.text(max_size=80), scalars), "anonymousId": st.one_of(st.text(max_size=150), scalars),
        "userId": st.one_of(st.text(max_size=20), st.integers()), "previousId": st.text(max_size=20),
        "messageId": st.one_of(st.uuids().map(str), st.text(max_size=40)), "timestamp": times, "originalTimestamp": times,
        "sentAt": times, "properties": json_values, "traits": json_values, "context": json_values,
        "groupId": scalars, "name": scalars,
    })


@given(st.lists(st.one_of(segment_messages, json_values), min_size=1, max_size=8), times)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_segment_message_is_stored_or_rejected_once(messages, sent_at):
    with tempfile.TemporaryDirectory() as folder:
        door = ProtocolDoor(Path(folder))
        try:
            body = msgspec.json.encode({"batch": messages, **({"sentAt": sent_at} if sent_at is not None else {})})
            answer = door.call("/v1/batch", body, {"authorization": basic(), **JSON})
            assert answer.status in (200, 400), answer.json
            spooled = door.spooled()
            if answer.status == 400 and answer.json["code"] != "invalid_events":
                assert spooled.rows == [] and [r["index"] for r in spooled.rejected] == [-1]  # refused whole, kept
                return
            assert sorted([r["index"] for r in spooled.rejected]) == [r["index"] for r in answer.json.get("rejected", [])]
            assert len(spooled.rows) + len(spooled.rejected) == len(messages)
            assert all(r["source"] == "segment" for r in spooled.rows)
        finally:
            door.close()


@given(st.text(max_size=200))
def test_canonical_name_always_fits_the_pattern(text):
    name = canonical_name(text)
    assert 1 <= len(name) <= NAME_MAX and re.match(NAME_PATTERN, name)


@given(segment_messages, st.text(min_size=1, max_size=20))
def test_event_id_is_a_function_of_tenant_and_message(msg, tenant):
    try:
        first = map_message(msg, tenant, None, None).event.get("event_id")
        again = map_message(dict(msg), tenant, None, 1_764_230_000_000).event.get("event_id")
    except Exception as exc:  # only Unmappable may come out of a mapping
        assert type(exc).__name__ == "Unmappable"
        return
    assert first == again


params_text = st.one_of(st.text(max_size=30), st.integers(-10**15, 10**15).map(str), st.just(""))
snowplow_events = st.fixed_dictionaries(
    {"e": st.sampled_from(["pv", "pp", "se", "ue", "tr", ""]), "aid": st.sampled_from([WRITE_KEY, "shop-web", "unclaimed"])},
    optional={k: params_text for k in ("duid", "uid", "nuid", "sid", "eid", "dtm", "stm", "ttm", "url", "page", "refr",
                                          "se_ac", "se_ca", "se_va", "pp_mix", "pp_may", "ue_pr", "ue_px", "co", "cx",
                                          "res", "vp", "lang", "tz", "ua", "ip")})


@given(st.lists(st.one_of(snowplow_events, json_values), min_size=1, max_size=8))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_snowplow_event_is_stored_or_rejected_once(events):
    with tempfile.TemporaryDirectory() as folder:
        door = ProtocolDoor(Path(folder), tenant={"app_ids": ["shop-web"]})
        try:
            body = msgspec.json.encode({"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
                                        "data": events})
            answer = door.call("/com.snowplowanalytics.snowplow/tp2", body, JSON)
            assert answer.status in (200, 400, 401), answer.json
            spooled = door.spooled()
            assert sorted(r["index"] for r in spooled.rejected) == [r["index"] for r in answer.json["rejected"]]
            assert len(spooled.rows) + len(spooled.rejected) == len(events) == answer.json["accepted"] + len(answer.json["rejected"])
            assert all(r["source"] == "snowplow" for r in spooled.rows)
        finally:
            door.close()
