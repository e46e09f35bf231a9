"""Hypothesis against ``POST /v1/events``, in process, with a real spool.

The invariants, whatever the body and the headers:

* the answer is a 2xx or a 4xx, never a 5xx and never an exception, and a 4xx is JSON with
  ``error`` and ``reason``;
* when the envelope was valid, accepted + rejected = the events sent, each rejection names
  its index once, and the counters say the same (received = accepted + rejected);
* everything accepted can become a lake row: lake delivery's ``segment_rows`` and the
  realtime feed read the spooled segment, every accepted event_id is a row, every string
  column is valid UTF-8 (pyarrow's full validation), and props and context are JSON objects
  for DuckDB (``json_valid``) and for msgspec.

Bodies are built from a JSON tree whose leaves may be raw hostile tokens (invalid UTF-8, lone
surrogates escaped and raw, NaN, 1e999, deep nesting, duplicate keys...), then maybe gzipped,
given a BOM, truncated or mangled. ``HYPOTHESIS_PROFILE=ci`` derandomizes (same examples on
every run); the default profile explores. About 30 s in all on two cores.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from door_harness import Door, Spooled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

settings.register_profile("door", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("door-ci", parent=settings.get_profile("door"), derandomize=True)
PROFILE = "door-ci" if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else "door"

SCHEMA = {"type": "object", "properties": {"price": {"type": "number", "minimum": 0, "multipleOf": 0.01},
                                           "sku": {"type": "string", "maxLength": 16}}}
TENANT = {"schemas": [{"level": "mid", "name": "add_to_cart", "schema": SCHEMA}]}

# -- a JSON tree that can hold what msgspec would never write -------------------------------------


@dataclass(frozen=True)
class Raw:
    data: bytes  # emitted as is


@dataclass(frozen=True)
class Obj:
    pairs: tuple  # (key, value) pairs: keys may repeat


def emit(node: Any) -> bytes:
    if isinstance(node, Raw):
        return node.data
    if isinstance(node, Obj):
        return b"{" + b",".join(emit(k) + b":" + emit(v) for k, v in node.pairs) + b"}"
    if isinstance(node, list):
        return b"[" + b",".join(emit(v) for v in node) + b"]"
    return msgspec.json.encode(node)


def quoted(inner: bytes) -> Raw:
    return Raw(b'"' + inner + b'"')


surrogate_escapes = st.builds(
    lambda units: quoted(b"x" + b"".join(b"\\u%04x" % u for u in units)),
    st.lists(st.one_of(st.integers(0xD800, 0xDFFF), st.integers(0x41, 0x5A)), min_size=1, max_size=3),
)
bad_strings = st.one_of(
    st.sampled_from([quoted(b"\xff"), quoted(b"\xc3("), quoted(b"\xed\xa0\x80"), quoted(b"\xed\xbf\xbf tail"),
                     quoted(b"\xf4\x90\x80\x80"), quoted(b"\xc0\xaf"), quoted(b"a\\q"), quoted(b"\x01"),
                     quoted(b"\\ud83d\\ude00"), quoted(b"\\u0000"), quoted(b"caf\xc3\xa9")]),
    surrogate_escapes,
    # random bytes that keep the token a string: valid or not, msgspec must not be the judge of the batch
    st.binary(max_size=6).map(lambda b: quoted(b.replace(b'"', b"").replace(b"\\", b""))),
)
bad_literals = st.sampled_from([Raw(x) for x in (
    b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1.5E+400", b"9" * 400, b"1" + b"0" * 308, b"-0", b"1e-400",
    b"01", b"1.", b"+1", b"0x10", b"true", b"null", b"[]", b"{}",
)])
depths = st.one_of(st.integers(1, 40), st.integers(900, 3000))
deep = st.one_of(
    st.builds(lambda n: Raw(b"[" * n + b"]" * n), depths),
    st.builds(lambda n: Raw(b'{"a":' * n + b"1" + b"}" * n), depths),
    st.builds(lambda n: Raw(b'[{"a":' * n + b'"x"' + b"}]" * n), depths),
)
# Clean JSON: what a tracker sends (duplicate keys included: JSON allows them, the last one wins).
clean_keys = st.one_of(st.text(max_size=6), st.sampled_from(["a", "a", "sku", "price"]))
clean_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(10**300), 10**300),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12)),
    lambda kids: st.one_of(st.lists(kids, max_size=4),
                           st.lists(st.tuples(clean_keys, kids), max_size=4).map(lambda p: Obj(tuple(p)))),
    max_leaves=8)
clean_objects = st.lists(st.tuples(clean_keys, clean_values), max_size=5).map(lambda p: Obj(tuple(p)))
# What a tracker never sends, and an attacker or a broken client does.
hostile_values = st.one_of(bad_strings, bad_literals, deep, st.integers(-(10**400), 10**400))
odd = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
                st.lists(st.integers(), max_size=2), clean_objects, hostile_values)

VALID = {
    "level": st.sampled_from(["low", "mid", "high"]),
    "name": st.sampled_from(["page_view", "add_to_cart", "click", "a" * 64, "x.y:z-1_2"]),
    "anonymous_id": st.one_of(st.text(min_size=1, max_size=8), st.sampled_from(["a" * 128, "é" * 128])),
    "event_id": st.uuids(version=4).map(str),
    "user_id": st.one_of(st.none(), st.text(min_size=1, max_size=8)),
    "session_id": st.one_of(st.none(), st.text(min_size=1, max_size=8)),
    "client_ts": st.one_of(st.integers(946_684_800_000, 4_102_444_800_000), st.just(946_684_800_000)),
    "url": st.one_of(st.none(), st.text(max_size=10), st.just("u" * 2048)),
    "referrer": st.one_of(st.none(), st.text(max_size=10)),
    "title": st.one_of(st.none(), st.text(max_size=10)),
    "props": st.one_of(st.none(), clean_objects, st.builds(lambda p, s: Obj((("price", p), ("sku", s))),
                                                           st.sampled_from([0, 1.5, 12.34, 1e6]), st.text(max_size=16))),
    "context": st.one_of(st.none(), clean_objects),
}
REQUIRED = ("level", "name", "anonymous_id")
HOSTILE_KINDS = ("odd", "missing", "unknown", "over", "dup", "string", "props", "context", "props", "props")
OVER_LIMIT = {"name": ["a" * 65, "Bad Name", ""], "anonymous_id": ["a" * 129, ""], "url": ["u" * 2049],
              "client_ts": [946_684_799_999, 4_102_444_800_001, 1_764_230_000], "event_id": ["not-a-uuid", ""]}


def _hostile_in(node: Obj, bad: Any, at_key: bool) -> Obj:
    """``node`` with ``bad`` added as a value (or as a key), at the top or one level down."""
    pair = (bad, 1) if at_key else ("h", bad)
    for i, (k, v) in enumerate(node.pairs):
        if isinstance(v, Obj):
            return Obj(node.pairs[:i] + ((k, Obj(v.pairs + (pair,))),) + node.pairs[i + 1 :])
    return Obj(node.pairs + (pair,))


@st.composite
def events(draw: st.DrawFn) -> Obj:
    """A valid event; half of them then get one hostile change."""
    fields = {name: draw(VALID[name]) for name in REQUIRED}
    fields.update({name: draw(VALID[name]) for name in VALID if name not in REQUIRED and draw(st.booleans())})
    pairs = [(k, v) for k, v in fields.items() if v is not None or draw(st.booleans())]
    # Hypothesis favours the ends of a range: "none" at the low end, the hostile kinds spread above it.
    roll = draw(st.integers(0, 99))
    kind = "none" if roll < 50 else HOSTILE_KINDS[roll % len(HOSTILE_KINDS)]
    if kind == "odd":
        i = draw(st.integers(0, len(pairs) - 1))
        pairs[i] = (pairs[i][0], draw(odd))
    elif kind == "missing":
        pairs = [p for p in pairs if p[0] != draw(st.sampled_from(REQUIRED))]
    elif kind == "unknown":
        pairs.append(("surplus", draw(odd)))
    elif kind == "over":
        name = draw(st.sampled_from(sorted(OVER_LIMIT)))
        pairs = [p for p in pairs if p[0] != name] + [(name, draw(st.sampled_from(OVER_LIMIT[name])))]
    elif kind == "dup":
        pairs.append(draw(st.sampled_from(pairs)))
    elif kind == "string":
        name = draw(st.sampled_from(["name", "anonymous_id", "user_id", "url", "title", "event_id"]))
        pairs = [p for p in pairs if p[0] != name] + [(name, draw(bad_strings))]
    elif kind in ("props", "context"):
        node = next((v for k, v in pairs if k == kind and isinstance(v, Obj)), Obj(()))
        at_key = draw(st.booleans())
        bad = draw(bad_strings if at_key else hostile_values)
        pairs = [p for p in pairs if p[0] != kind] + [(kind, _hostile_in(node, bad, at_key))]
    return Obj(tuple(pairs))


@dataclass
class Sent:
    body: bytes
    headers: dict[str, str]
    events: list | None  # the event nodes, when the body holds a well-formed envelope of them


@st.composite
def requests(draw: st.DrawFn) -> Sent:
    batch = draw(st.lists(events(), min_size=1, max_size=10))
    pairs: list = [("events", batch)]
    if draw(st.booleans()):
        odd_sent_at = 95 <= draw(st.integers(0, 99))
        pairs.insert(0, ("sent_at", draw(odd if odd_sent_at else st.integers(946_684_800_000, 4_102_444_800_000))))
    envelope_ok = all(isinstance(v, int) and not isinstance(v, bool) and 946_684_800_000 <= v <= 4_102_444_800_000
                      for k, v in pairs if k == "sent_at")
    if 90 <= draw(st.integers(0, 99)) < 95:
        pairs.append(draw(st.sampled_from([("events", []), ("k", "wk_doordoordoordoordoor"), ("extra", 1)])))
        envelope_ok = envelope_ok and pairs[-1][0] == "k"
    body = emit(Obj(tuple(pairs)))
    headers = {"content-type": draw(st.sampled_from(
        ["text/plain;charset=UTF-8", "application/json", "application/json; charset=utf-8", "APPLICATION/JSON"]))}
    mangle = draw(st.integers(0, 99)) - 90  # 0..9 mangled, about one in ten
    if mangle in (0, 1):
        body = b"\xef\xbb\xbf" + body
    elif mangle in (2, 3) and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
        envelope_ok = False
    elif mangle in (4, 5) and body:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + draw(st.binary(min_size=1, max_size=3)) + body[at + 1 :]
        envelope_ok = False
    elif mangle == 6:
        headers["content-type"] = draw(st.sampled_from(["application/x-www-form-urlencoded", "", "json", "text/html"]))
        envelope_ok = False
    if 80 <= draw(st.integers(0, 99)) < 95:
        cut = draw(st.integers(0, len(body)))
        members = [gzip.compress(body[:cut]), gzip.compress(body[cut:])] if draw(st.booleans()) else [gzip.compress(body)]
        tail = draw(st.sampled_from([b""] * 5 + [b"\x00", b"junk", b"\x1f\x8b\x08"]))
        body = b"".join(members) + tail
        headers["content-encoding"] = "gzip"
        envelope_ok = envelope_ok and not tail
    return Sent(body, headers, batch if envelope_ok else None)


# -- the invariants --------------------------------------------------------------------------------

_duck = duckdb.connect()


def check_lake(spooled: Spooled) -> None:
    for n, table in enumerate(spooled.raw_tables):
        name = f"raw_{n}"
        _duck.register(name, table)
        try:
            for column in ("props", "context"):
                bad = _duck.execute(f"select count(*) from {name} where {column} is not null and not json_valid({column})").fetchone()
                assert bad == (0,), f"{column} not valid JSON for DuckDB"
                kinds = _duck.execute(f"select distinct json_type({column}) from {name} where {column} is not null").fetchall()
                assert set(kinds) <= {("OBJECT",)}, kinds
        finally:
            _duck.unregister(name)
    for row in spooled.rows:
        for column in ("props", "context"):
            if row[column] is not None:
                assert isinstance(msgspec.json.decode(row[column]), dict)


def generated_id(event: Obj) -> str | None:
    """The event_id the lake must hold for this event, when it sent a well-formed one."""
    ids = [v for k, v in event.pairs if k == "event_id"]
    if not ids or not isinstance(ids[-1], str):  # the last duplicate wins, as in any JSON decoder
        return None
    return str(uuid.UUID(ids[-1]))


def check(door: Door, sent: Sent) -> None:
    r = door.post(sent.body, headers=sent.headers)
    assert 200 <= r.status < 500, (r.status, r.body)
    answer = r.json
    if r.status >= 400:
        assert isinstance(answer["error"], str) and answer["error"] and isinstance(answer["reason"], str)
    spooled = door.spooled()
    check_lake(spooled)
    assert len(spooled.feed) == len(spooled.rows)
    if "accepted" in answer:
        rejected = [e["index"] for e in answer["rejected"]]
        assert len(set(rejected)) == len(rejected) and all(e["reason"] and e["error"] for e in answer["rejected"])
        assert (r.status == 200) == (answer["accepted"] > 0)
        assert len(spooled.rows) == answer["accepted"]
        assert sorted(row["index"] for row in spooled.rejected) == sorted(rejected)
        if sent.events is not None:
            assert answer["accepted"] + len(rejected) == len(sent.events)
            assert all(0 <= i < len(sent.events) for i in rejected)
            kept = [generated_id(ev) for i, ev in enumerate(sent.events) if i not in set(rejected)]
            lake = Counter(row["event_id"] for row in spooled.rows)
            assert Counter(eid for eid in kept if eid is not None) <= lake
    else:
        assert spooled.rows == [] and [row["index"] for row in spooled.rejected] in ([], [-1])
    received = door.counter("beaconlake_events_received_total")
    assert received == door.counter("beaconlake_events_accepted_total") + door.counter("beaconlake_events_rejected_total")


@pytest.fixture(scope="module")
def door():
    with tempfile.TemporaryDirectory() as tmp:
        d = Door(Path(tmp), tenant=TENANT, spool={"durability": "os"})
        yield d
        d.close()


@settings(settings.get_profile(PROFILE), max_examples=300)
@given(sent=requests())
def test_any_batch_is_answered_and_whatever_is_accepted_is_deliverable(door, sent):
    check(door, sent)


@settings(settings.get_profile(PROFILE))
@given(body=st.one_of(st.binary(max_size=300), st.builds(lambda s: s.encode("utf-8", "surrogatepass"), st.text(
    alphabet=st.characters(categories=["Cs", "Ps", "Pe", "Po", "Nd", "Ll"]), max_size=200))),
    ctype=st.sampled_from(["application/json", "text/plain"]))
def test_any_bytes_at_all(door, body, ctype):
    check(door, Sent(body, {"content-type": ctype}, None))


header_text = st.text(alphabet=st.characters(categories=["Cs", "L", "N", "P", "Zs", "Cc"]), max_size=40)


@settings(settings.get_profile(PROFILE))
@given(sent=requests(), user_agent=st.one_of(st.none(), header_text), origin=st.one_of(st.none(), header_text),
       forwarded=st.one_of(st.none(), header_text, st.lists(st.ip_addresses().map(str), max_size=3).map(", ".join)),
       method=st.sampled_from(["POST", "POST", "POST", "OPTIONS", "GET", "PUT", "\udcff"]))
def test_hostile_headers_never_break_the_answer_or_the_lake(door, sent, user_agent, origin, forwarded, method):
    headers = dict(sent.headers)
    for name, value in (("user-agent", user_agent), ("origin", origin), ("x-forwarded-for", forwarded)):
        if value is not None:
            headers[name] = value
    r = door.post(sent.body, headers=headers, method=method)
    assert 200 <= r.status < 500, (r.status, r.body)
    assert r.status == 204 or isinstance(r.json, dict)
    spooled = door.spooled()
    check_lake(spooled)
    for row in spooled.rows + spooled.rejected:
        assert row["ip"] is None or row["ip"].count(".") == 3 or ":" in row["ip"]
