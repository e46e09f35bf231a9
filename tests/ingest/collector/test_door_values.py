"""What an event may hold: bad strings, deep nesting, huge numbers, hostile schemas.

Each bad value costs its own event only, with a reason and an error naming the field; the other
events of the batch are spooled and read back by lake delivery and the realtime feed.
"""

import gzip
import uuid

import duckdb
import msgspec
import pytest
from door_harness import Door, body, event

GOOD_ID = "0b7e6f61-5d57-4a0e-9f0a-3a1d2f1e9c01"
OTHER_ID = "6f1c1e2a-8a55-4d2b-b2a6-0f4c1d9e2a77"


@pytest.fixture
def door(tmp_path):
    d = Door(tmp_path)
    yield d
    d.close()


def splice(good: bytes, placeholder: str, raw: bytes) -> bytes:
    """A body with ``raw`` bytes where ``placeholder`` (a JSON string) was: msgspec cannot write them."""
    encoded = msgspec.json.encode(placeholder)
    assert good.count(encoded) == 1
    return good.replace(encoded, raw)


def assert_only_index_1_rejected(door: Door, content: bytes, reason: str, *fragments: str) -> dict:
    r = door.post(content)
    assert r.status == 200, r.body
    answer = r.json
    assert answer["accepted"] == 2
    [rej] = answer["rejected"]
    assert rej["index"] == 1 and rej["reason"] == reason, rej
    for fragment in fragments:
        assert fragment in rej["error"], rej["error"]
    spooled = door.spooled()
    assert sorted(row["event_id"] for row in spooled.rows) == sorted([GOOD_ID, OTHER_ID])
    assert len(spooled.feed) == 2
    [kept] = spooled.rejected
    assert kept["index"] == 1 and kept["reason"] == reason
    return rej


def batch_with(bad_event: dict) -> bytes:
    return body(event(event_id=GOOD_ID), bad_event, event(event_id=OTHER_ID, props={"ok": "é😀"}))


# -- finding 1: invalid UTF-8 and lone surrogates, anywhere -----------------------------------


def test_the_reported_body_is_refused_not_acknowledged(door):
    # printf '{"events":[{"level":"mid","name":"x","anonymous_id":"a","props":{"a":"\xff"}}]}'
    r = door.post(b'{"events":[{"level":"mid","name":"x","anonymous_id":"a","props":{"a":"\xff"}}]}')
    assert r.status == 400 and r.json["reason"] == "invalid_events"
    [rej] = r.json["rejected"]
    assert rej["reason"] == "invalid_string" and rej["error"].startswith("events[0].props.a: invalid UTF-8")
    assert door.spooled().rows == []


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ({"props": {"a": "@@"}}, "events[1].props.a"),
        ({"props": {"list": [1, {"deep": "@@"}]}}, "events[1].props.list[1].deep"),
        ({"props": {"@@": 1}}, "events[1].props (a key)"),
        ({"context": {"locale": "@@"}}, "events[1].context.locale"),
        ({"title": "@@"}, "events[1].title"),
        ({"url": "@@"}, "events[1].url"),
        ({"anonymous_id": "@@"}, "events[1].anonymous_id"),
        ({"user_id": "@@"}, "events[1].user_id"),
        ({"name": "@@"}, "events[1].name"),
    ],
)
@pytest.mark.parametrize(
    ("raw", "reason", "says"),
    [
        (b'"\xff"', "invalid_string", "invalid UTF-8: byte 0xff"),
        (b'"ok \xc3("', "invalid_string", "invalid UTF-8: byte 0xc3"),
        (b'"\xed\xa0\x80"', "invalid_string", "lone surrogate U+D800"),  # a surrogate written raw
        (b'"\\ud800"', "invalid_string", "lone surrogate \\ud800"),
        (b'"\\udc00 tail"', "invalid_string", "lone surrogate \\udc00"),
        (b'"\\ud83d\\u0041"', "invalid_string", "lone surrogate \\ud83d"),
        (b'"a\\qb"', "invalid_string", "invalid escape \\q"),
        (b'"tab\x09in"', "invalid_string", "control character U+0009"),
    ],
)
def test_a_bad_string_costs_its_event_only(door, where, path, raw, reason, says):
    field, value = next(iter(where.items()))
    content = splice(batch_with(event(**{field: value})), "@@", raw)
    rej = assert_only_index_1_rejected(door, content, reason, path, says)
    assert rej["error"].startswith(path)


def test_valid_surrogate_pairs_and_non_ascii_are_accepted(door):
    content = splice(body(event(event_id=GOOD_ID, title="@1", props={"p": "@2"})), "@1", b'"caf\xc3\xa9 \\ud83d\\ude00"')
    content = splice(content, "@2", b'"\\ud83d\\ude00"')
    r = door.post(content)
    assert r.status == 200 and r.json == {"accepted": 1, "rejected": []}
    [row] = door.spooled().rows
    assert row["title"] == "café 😀" and msgspec.json.decode(row["props"]) == {"p": "😀"}


def test_a_leading_byte_order_mark_is_ignored(door):
    r = door.post(b"\xef\xbb\xbf" + body(event(event_id=GOOD_ID)))
    assert r.status == 200 and r.json["accepted"] == 1
    assert [row["event_id"] for row in door.spooled().rows] == [GOOD_ID]


def test_a_bad_key_of_the_envelope_refuses_the_batch_and_says_why(door):
    r = door.post(b'{"sent_at": 1764230001000, "k": "\xff", "events": []}')
    assert r.status == 400 and r.json["reason"] == "invalid_batch" and "k: invalid UTF-8" in r.json["error"]


def test_up_to_max_notes_bad_strings_each_cost_their_event_only(door):
    bad = [event(props={"a": ["@@"] * 4}) for _ in range(250)]  # 1000 bad strings
    content = body(event(event_id=GOOD_ID), *bad).replace(b'"@@"', b'"\\ud800"')
    r = door.post(content)
    assert r.status == 200 and r.json["accepted"] == 1 and len(r.json["rejected"]) == 250
    assert {e["reason"] for e in r.json["rejected"]} == {"invalid_string"}


def test_more_bad_strings_than_can_be_set_aside_refuse_the_body(door):
    # Each bad string costs microseconds to set aside: past 1000 in one body, the encoding is broken.
    content = body(event(event_id=GOOD_ID), event(props={"a": ["@@"] * 1001})).replace(b'"@@"', b'"\\ud800"')
    r = door.post(content)
    assert r.status == 400 and r.json["reason"] == "invalid_json"
    assert "more than 1000 bad strings" in r.json["error"]
    [kept] = door.spooled().rejected  # refused, and kept in lake/rejected like any refused batch
    assert kept["index"] == -1 and kept["reason"] == "invalid_json"
    # Invalid UTF-8 does not stop msgspec from splitting the body: then only the event pays.
    content = body(event(event_id=GOOD_ID), event(props={"a": ["@@"] * 1001})).replace(b'"@@"', b'"\xff"')
    r = door.post(content)
    assert r.status == 200 and r.json["rejected"][0]["error"] == "events[1].props: more than 1000 bad strings or too-deep values"


# -- finding 2: 4xx for every input; deep nesting, huge numbers, hostile schemas ----------------


@pytest.mark.parametrize("depth", [33, 1000, 5000, 100_000])
def test_deep_props_cost_their_event_only(door, depth):
    deep = b"[" * (depth - 1) + b"]" * (depth - 1)
    content = splice(batch_with(event(props={"a": "@@"})), "@@", deep)
    assert_only_index_1_rejected(door, content, "too_deep", "events[1].props", "limit 32 (collector.max_json_depth)")


def test_depth_limit_edges(tmp_path):
    door = Door(tmp_path, collector={"max_json_depth": 3})
    ok = {"a": {"b": {"c": 1}}}  # 3 levels
    r = door.post(body(event(props=ok), event(props={"a": {"b": {"c": [1]}}}), event(context={"x": [[[]]]})))
    assert r.status == 200 and r.json["accepted"] == 1
    errors = {e["index"]: e["error"] for e in r.json["rejected"]}
    assert errors == {
        1: "events[1].props: nested 4 levels deep, limit 3 (collector.max_json_depth)",
        2: "events[2].context: nested 4 levels deep, limit 3 (collector.max_json_depth)",
    }
    # Brackets inside strings are text, not nesting.
    assert door.post(body(event(props={"a": "[[[[[[{{{{{{"}))).status == 200
    door.close()


@pytest.mark.parametrize(
    ("content", "reason", "fragment"),
    [
        (b'{"sent_at": ' + b"[" * 3000 + b"]" * 3000 + b', "events": []}', "invalid_batch", "at `$.sent_at`"),
        (b'{"k": {"a": ' + b"[" * 3000 + b"]" * 3000 + b'}, "events": []}', "invalid_batch", "at `$.k`"),
        (b'{"events": [' + b"[" * 3000, "invalid_json", "not valid JSON"),
        (b"[" * 200_000, "invalid_batch", "Expected `object`, got `array`"),
        (b'{"events": ' + b"{" * 200_000, "invalid_batch", "Expected `array`, got `object`"),
        (b'{"events": [{"a": NaN}]}', "invalid_json", "not valid JSON"),
        (b'{"events": [{"a": "unterminated \xff}]}', "invalid_json", "not valid JSON"),
    ],
)
def test_bodies_that_are_not_a_batch_are_400(door, content, reason, fragment):
    r = door.post(content)
    assert r.status == 400 and r.json["reason"] == reason and fragment in r.json["error"], r.json


@pytest.mark.parametrize(
    ("literal", "says"),
    [
        (b"1e999", "Number out of range"),
        (b"-1.5E+400", "Number out of range"),
        (b"9" * 400, "integer out of range"),
        (b"-" + b"9" * 5000, "out of range"),
    ],
)
def test_numbers_beyond_float64_cost_their_event(door, literal, says):
    content = splice(batch_with(event(props={"n": "@@"})), "@@", literal)
    assert_only_index_1_rejected(door, content, "invalid_number", "events[1].props", says)


def test_huge_numbers_that_fit_are_accepted_and_json_valid(door):
    content = splice(body(event(event_id=GOOD_ID, props={"n": "@@", "x": 1.7e308})), "@@", b"9" * 300)
    assert door.post(content).status == 200
    [row] = door.spooled().rows
    assert duckdb.connect().execute("select json_valid(?)", [row["props"]]).fetchone() == (True,)


def test_a_huge_number_under_a_schema_is_a_rejection_not_a_500(tmp_path):
    # What answered 500: fastjsonschema divides by multipleOf, and float(10**400) overflows.
    schema = {"type": "object", "properties": {"n": {"type": "number", "multipleOf": 0.1}}}
    door = Door(tmp_path, tenant={"schemas": [{"level": "mid", "name": "buy", "schema": schema}]})
    content = splice(batch_with(event(name="buy", props={"n": "@@"})), "@@", b"1" + b"0" * 400)
    assert_only_index_1_rejected(door, content, "invalid_number", "events[1].props.n: integer out of range")
    # The usual schema failure is still the schema's message.
    r = door.post(body(event(name="buy", props={"n": 0.15}), event(name="buy", props={"n": 0.2})))
    assert r.status == 200 and r.json["rejected"][0]["reason"] == "schema"
    assert "must be multiple of 0.1" in r.json["rejected"][0]["error"]
    door.close()


def test_a_schema_that_raises_is_a_rejection_not_a_500(tmp_path):
    # fastjsonschema compiles multipleOf 0 and then divides by it: ZeroDivisionError on every number.
    schema = {"type": "object", "properties": {"n": {"multipleOf": 0}}}
    door = Door(tmp_path, tenant={"schemas": [{"level": "mid", "name": "buy", "schema": schema}]})
    assert_only_index_1_rejected(door, batch_with(event(name="buy", props={"n": 3})), "schema",
                                 "events[1].props cannot be checked against the mid/buy schema: ZeroDivisionError")
    door.close()


# -- finding 4: gzip ---------------------------------------------------------------------------


GZ = {"content-type": "application/json", "content-encoding": "gzip"}


def test_gzip_members_are_all_decompressed(door):
    whole = body(event(event_id=GOOD_ID), event(event_id=OTHER_ID))
    cut = len(whole) // 2
    r = door.post(gzip.compress(whole[:cut]) + gzip.compress(whole[cut:]), headers=GZ)
    assert r.status == 200 and r.json["accepted"] == 2


@pytest.mark.parametrize("tail", [b"garbage", b"\x00" * 8, b"\x1f"])
def test_trailing_bytes_after_gzip_are_400(door, tail):
    r = door.post(gzip.compress(body(event())) + tail, headers=GZ)
    assert r.status == 400 and r.json["reason"] == "invalid_gzip"
    assert f"{len(tail)} bytes of trailing garbage after gzip member 1" in r.json["error"]
    assert door.spooled().rows == []


def test_a_bad_second_gzip_member_is_400(door):
    r = door.post(gzip.compress(body(event())) + b"\x1f\x8b" + b"\x00" * 20, headers=GZ)
    assert r.status == 400 and "gzip member 2" in r.json["error"]


def test_gzip_bomb_limit_counts_every_member(tmp_path):
    door = Door(tmp_path, collector={"max_body_bytes": 3000})
    padding = b" " * 4000  # JSON allows whitespace: the body is valid, only too big
    r = door.post(gzip.compress(body(event())) + gzip.compress(padding), headers=GZ)
    assert r.status == 413 and "once decompressed, limit 3000" in r.json["error"]
    door.close()


def test_event_ids_round_trip_as_canonical_uuids(door):
    eid = uuid.uuid4()
    door.post(body(event(event_id=str(eid).upper())))
    assert [row["event_id"] for row in door.spooled().rows] == [str(eid)]


def test_a_client_ts_far_from_sent_at_costs_its_event_not_the_batch(door):
    """Each clock is within bounds alone, but corrected for skew the event would be dated before
    2000: the lake and the realtime feed could not agree on it, so the door refuses it."""
    sent_at = 4_102_000_000_000  # 2099
    body = msgspec.json.encode({"sent_at": sent_at, "events": [
        event(client_ts=946_684_800_001), event(client_ts=sent_at - 1000)]})
    r = door.post(body)
    assert r.status == 200, r.body
    assert [x["index"] for x in r.json["rejected"]] == [0]
    assert "event_ts" in r.json["rejected"][0]["error"] and "2000-01-01" in r.json["rejected"][0]["error"]
    spooled = door.spooled()
    assert len(spooled.rows) == 1 and len(spooled.feed) == 1
