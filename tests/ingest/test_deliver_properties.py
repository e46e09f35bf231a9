"""Delivery of arbitrary spool records: every accepted event ends up exactly once in the lake,
as a raw row or as a rejected row, and the segment is gone afterwards.

The records are hostile on purpose: invalid UTF-8 in props, context or the body, lone surrogate
escapes, integers far out of range, deep nesting, ids that are not UUIDs, levels that are not
levels, accepted indexes that are not in the batch, frames that are not records at all."""

import re
import tempfile
from collections import Counter
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beaconlake import config
from beaconlake.ingest import spool
from beaconlake.ingest.deliver import Deliverer
from beaconlake.types import Rejection, SpoolRecord, UserAgent
from support import read_lake

DAY1 = 1_764_201_600_000
SANE_MS = st.integers(DAY1, DAY1 + 86_400_000)
HOSTILE_MS = st.sampled_from([-1, -(2**63), 2**63 - 1, 2**64 - 1, 253_402_300_800_000])
KEYS = {"write_key": "wk_aaaaaaaaaaaaaaaaaaaa", "read_key": "rk_aaaaaaaaaaaaaaaaaaaa"}

# Variants that must reach the raw lake (given sane clocks), and those that cannot.
GOOD = ["ok", "upper_uuid", "big_numbers_in_props", "shallow_nesting", "no_event_id", "unicode"]
BAD = ["bad_utf8_props", "bad_utf8_context", "bad_utf8_name", "surrogate_escape", "huge_client_ts",
       "negative_client_ts", "bad_event_id", "bad_level", "bad_scalar", "missing_fields", "wrong_type", "too_deep"]
# An event whose brackets do not balance breaks its whole body: no split can number the events
# as the collector did (which could not have parsed it either), so the body is refused whole.
BREAKS_BODY = ["unbalanced"]


def event_bytes(variant: str, anon: str, client_ts: int) -> bytes:
    base = {"level": "mid", "name": "page_view", "anonymous_id": anon, "client_ts": client_ts,
            "event_id": "0b3ba0c4-6bd8-4f3c-9d0b-0c5c7f1b2a90", "props": {"k": "v"}}
    enc = msgspec.json.encode
    match variant:
        case "ok":
            return enc(base)
        case "upper_uuid":
            return enc({**base, "event_id": base["event_id"].upper()})
        case "big_numbers_in_props":
            return enc({**base, "props": {"n": 2**63 - 1, "f": 1e308, "neg": -(2**63)}})
        case "shallow_nesting":
            return enc(base)[:-1] + b',"context":' + b"[" * 50 + b"]" * 50 + b"}"
        case "no_event_id":
            return enc({k: v for k, v in base.items() if k != "event_id"})
        case "unicode":
            return enc({**base, "props": {"q": "café ☕ \U0001F600"}, "title": "naïve"})
        case "bad_utf8_props":
            return enc(base).replace(b'"v"', b'"v\xff\xfe"')
        case "bad_utf8_context":
            return enc(base)[:-1] + b',"context":{"tz":"\xc3\x28"}}'
        case "bad_utf8_name":
            return enc(base).replace(b'"page_view"', b'"page\xed\xa0\x80view"')  # an encoded surrogate
        case "surrogate_escape":
            return enc(base).replace(b'"v"', b'"\\ud800"')
        case "huge_client_ts":
            return enc({**base, "client_ts": 2**64 - 1})
        case "negative_client_ts":
            return enc({**base, "client_ts": -(10**15)})
        case "bad_event_id":
            return enc({**base, "event_id": "x" * 36})
        case "bad_level":
            return enc({**base, "level": "../../etc"})
        case "bad_scalar":
            return b'{"level": oops, "name": "page_view"}'
        case "unbalanced":
            return b'{"level": [oops}'
        case "missing_fields":
            return enc({"level": "mid", "anonymous_id": anon})
        case "wrong_type":
            return enc({**base, "user_id": 12})
        case "too_deep":  # deeper than a recursive decoder goes
            return enc(base)[:-1] + b',"context":' + b"[" * 3000 + b"]" * 3000 + b"}"
    raise AssertionError(variant)


@st.composite
def records(draw, rec_no: int):
    """(frame payload, what delivery must make of it)."""
    if draw(st.integers(0, 12)) == 0:  # a frame that is no record at all
        return draw(st.binary(max_size=60)), {"kind": "not_a_record"}
    tenant = draw(st.sampled_from(["t1", "t1", "t1", "T1", "../evil", ""]))
    sane = draw(st.booleans()) or draw(st.booleans())
    received_at = draw(SANE_MS if sane else st.one_of(SANE_MS, HOSTILE_MS))
    sent_at = received_at - draw(st.integers(0, 5000)) if sane else draw(st.one_of(SANE_MS, HOSTILE_MS))
    variants = draw(st.lists(st.sampled_from(GOOD + BAD + BREAKS_BODY), max_size=6))
    body_kind = draw(st.sampled_from(["envelope", "envelope", "envelope", "garbage", "empty"]))
    events = [event_bytes(v, f"r{rec_no}e{i}", DAY1 + 1000) for i, v in enumerate(variants)]
    if body_kind == "envelope":
        body = b'{"sent_at":%d,"events":[%s]}' % (DAY1, b",".join(events))
    elif body_kind == "garbage":
        body = b"\xff" + draw(st.binary(max_size=40))  # not JSON from its first byte
    else:
        body = b""
    accepted = draw(st.one_of(st.none(), st.lists(st.integers(-2, len(variants) + 2), max_size=8)))
    rejected = draw(st.lists(st.builds(Rejection, st.integers(-(2**40), 2**40), st.sampled_from(["invalid_event", "schema"]),
                                       st.text(max_size=20), st.text(max_size=20)), max_size=2))
    rec = SpoolRecord(tenant, received_at, sent_at, draw(st.one_of(st.none(), st.just("198.51.100.0"))),
                      draw(st.one_of(st.none(), st.text(max_size=30))), UserAgent(browser=draw(st.one_of(st.none(), st.text(max_size=10)))),
                      body, accepted, rejected)
    valid = bool(re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", tenant)) and all(
        0 <= t <= 253_402_300_799_999 for t in (received_at, sent_at))
    return msgspec.msgpack.encode(rec), {"kind": "record", "valid": valid, "sane": sane, "variants": variants,
                                         "body_kind": body_kind, "accepted": accepted, "door_rejections": len(rejected)}


@st.composite
def segments(draw):
    n = draw(st.integers(0, 6))
    return [draw(records(i)) for i in range(n)]


def expected_outcomes(models: list[dict]) -> tuple[set, set, int]:
    """(keys that must be raw rows, keys that may be raw or rejected, door rejection rows);
    a key is (record number, index in its batch), -1 standing for a whole record or body."""
    must_raw, either, door = set(), set(), 0
    for rec_no, m in enumerate(models):
        if m["kind"] == "not_a_record" or not m["valid"]:
            either.add((rec_no, -1))
            continue
        door += m["door_rejections"]
        if m["body_kind"] == "empty":
            continue
        if m["body_kind"] != "envelope" or any(v in BREAKS_BODY for v in m["variants"]):
            wanted = [-1] if m["accepted"] is None else list(dict.fromkeys(m["accepted"]))
            either.update((rec_no, i) for i in wanted)
            continue
        n = len(m["variants"])
        wanted = range(n) if m["accepted"] is None else list(dict.fromkeys(m["accepted"]))
        for i in wanted:
            good = 0 <= i < n and m["variants"][i] in GOOD and m["sane"]
            (must_raw if good else either).add((rec_no, i))
    return must_raw, either, door


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(segments())
def test_every_accepted_event_lands_exactly_once(drawn):
    payloads = [p for p, _ in drawn]
    models = [m for _, m in drawn]
    with tempfile.TemporaryDirectory() as tmp:
        s = config.parse({"tenants": [{"id": "t1", **KEYS}], "realtime": {"enabled": False}}, Path(tmp), environ={})
        path = spool.write_sealed_segment(s.spool_path, "1764201600000-prop-000001", payloads)
        result = Deliverer(s).deliver_segment(path)
        assert not path.exists() and not result.parked
        raw = read_lake(s.data_path)
        rejected = read_lake(s.data_path, "rejected")

    must_raw, either, door = expected_outcomes(models)
    raw_keys = Counter()
    for row in raw:
        rec_no, idx = re.fullmatch(r"r(\d+)e(\d+)", row["anonymous_id"]).groups()
        raw_keys[(int(rec_no), int(idx))] += 1
    undeliverable = Counter()
    for row in rejected:
        if row["reason"] == "undeliverable":
            rec_no = int(re.match(r"spool record (\d+)", row["error"]).group(1))
            undeliverable[(rec_no, row["index"])] += 1
    landed = raw_keys + undeliverable
    assert set(landed) == must_raw | either, (landed, must_raw, either)
    assert max(landed.values(), default=1) == 1, "an event landed twice"
    assert must_raw <= set(raw_keys), "a valid event was not delivered to the raw lake"
    assert sum(1 for r in rejected if r["reason"] != "undeliverable") == door
    assert result.events == len(raw) and result.rejections == len(rejected)
