"""The door's fast path answers and spools exactly what its general path does (issue 16).

``onepass`` (one typed decode without the name pattern, every props decoded at once), the
scrubber's quick look at the whole body (``Scrubber._quick_verbatim``) and the one search for
end users in the joined contexts are shortcuts: each must give, for every body, what the general
path gives. The reference is the general path itself, which the fast path hands every body it
does not take: ``decode_envelope``, ``TenantRules.check_batch``, ``Scrubber._quick``, a
per-event look for the end-user keys (the rule ``endusers`` documents), and, end to end, an
``EventsEndpoint`` with ``fast_path`` off. Compared: the answer (status, headers, body), the
spool records byte for byte, and the counters.

Bodies: the hostile ones of ``test_door_properties`` and tracker-like batches built to sit on
the edges of the shortcuts (URLs with the named query parameters in any case and with a Kelvin
sign that lower-cases to "k", card and phone numbers with separators or in Arabic-Indic digits,
e-mail addresses written with ``%40`` or ``\\u0040``, JSON escapes, names with a trailing newline,
client clocks at the calendar's ends, contexts that name an end user).
"""

from __future__ import annotations

import tempfile
import time
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import pytest
from door_harness import Door
from hypothesis import given, settings
from hypothesis import strategies as st
from test_door_properties import PROFILE, Obj, Raw, emit
from test_door_properties import requests as hostile_requests

from beaconlake.ingest import spool
from beaconlake.ingest.collector import endusers, events, onepass, validate
from beaconlake.lake import segment
from beaconlake.types import SpoolRecord

SCHEMA = {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string", "maxLength": 16},
                                                                 "price": {"type": "number", "minimum": 0}}}
SALT = "fastpath-test-salt-0123456789"
PII = {  # the default rules, and one set with every kind of rule on
    "default": {},
    "wide": {"redact_phones": True, "hash_query_params": ["uid"], "drop_props": ["email"], "hash_props": ["user"],
             "drop_context": ["secret"], "hash_context": ["device_id"]},
}
FIXED_NS = 1_764_230_001_500 * 1_000_000


def tenant(pii: str) -> dict:
    return {"schemas": [{"level": "mid", "name": "add_to_cart", "schema": SCHEMA}], "pii": PII[pii]}


# -- tracker-like batches on the edges of the shortcuts ---------------------------------------------

CARDS = ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "1234567890123",
         "".join(chr(0x660 + int(d)) for d in "4111111111111111"), "order 1 4111 1111 1111 1111",
         # a card in Arabic-Indic digits, found once the text holds 13 ASCII digits (in no run)
         "n=1234&m=5678&o=90123 " + "".join(chr(0x660 + int(d)) for d in "4111111111111111")]
PHONES = ["+33 1 23 45 67 89", "(555) 123-4567", "555.123.4567 x", "06 12 34 56 78"]
MAILS = ["a.b@shop.example", "a%40shop.example", "mail me: x+y@z.io"]
PLAIN = ["Trailhead – outdoor gear", "Running shoes", "size 42", "", "é" * 3, "12 items", "1764230000000"]
PARAMS = ["q", "token", "Email", "ACCESS_TOKEN", "e-mail", "auth", "uid", "api_\u212aey", "\u0130d_token", "sort",
          "pwd", "mail"]
texts = st.one_of(st.sampled_from(PLAIN), st.sampled_from(CARDS), st.sampled_from(PHONES), st.sampled_from(MAILS),
                  st.text(alphabet="0123456789 -().+@%a", max_size=24))


@st.composite
def urls(draw: st.DrawFn) -> str:
    base = "https://shop.example/" + draw(st.sampled_from(["", "p/ultra-42", "search", "c/x"]))
    query = "&".join(f"{draw(st.sampled_from(PARAMS))}={draw(st.sampled_from(['1', 'abc', 'x@y.io', '42']))}"
                     for _ in range(draw(st.integers(0, 3))))
    fragment = draw(st.sampled_from(["", "#top", "#access_token=s3cr3t", "#uid=9"]))
    return base + ("?" + query if query else "") + fragment


def escaped(text: str) -> Raw:
    """``text`` as a JSON string with the escapes a tracker may write (``\\/``, ``\\u0040``)."""
    inner = msgspec.json.encode(text)[1:-1].replace(b"/", b"\\/").replace(b"@", b"\\u0040")
    return Raw(b'"' + inner + b'"')


def string(draw: st.DrawFn, text: str) -> Any:
    return escaped(text) if draw(st.integers(0, 9)) == 0 else text


@st.composite
def props(draw: st.DrawFn, name: str) -> Any:
    if name == "add_to_cart":
        sku = draw(st.sampled_from(["UT42-DW0K", "x" * 17, ""]))
        return Obj((("sku", sku), ("price", draw(st.sampled_from([129.9, 0, -1, 1e6]))), ("qty", 1)))
    pairs = [(draw(st.sampled_from(["x", "text", "email", "user", "path", "n"])), draw(st.one_of(
        st.integers(0, 10**15), st.builds(lambda t: t, texts), st.just(None), st.lists(texts, max_size=2))))
        for _ in range(draw(st.integers(0, 3)))]
    pairs = [(k, string(draw, v) if isinstance(v, str) else v) for k, v in pairs]
    return Obj(tuple(pairs)) if draw(st.integers(0, 19)) else draw(st.sampled_from([None, Raw(b"[]"), Raw(b'"x"')]))


@st.composite
def context(draw: st.DrawFn) -> Any:
    pairs = []
    for key in draw(st.lists(st.sampled_from(["locale", "ip", "userAgent", "secret", "device_id", "library"]),
                             max_size=3, unique=True)):
        pairs.append((key, draw(st.sampled_from(["203.0.113.7", "curl/8.0", "fr-FR", "2001:db8::1", 7, None]))))
    return Obj(tuple(pairs))


@st.composite
def usual_event(draw: st.DrawFn, sent_at: int) -> Obj:
    name = draw(st.sampled_from(["page_view", "click", "scroll", "add_to_cart", "link_click", "click\n", "Click"]
                                if draw(st.integers(0, 9)) == 0 else ["page_view", "click", "add_to_cart"]))
    pairs: list = [("event_id", draw(st.uuids(version=4).map(str))), ("level", draw(st.sampled_from(["low", "mid"]))),
                   ("name", name), ("anonymous_id", "anon-" + draw(st.text("abc", min_size=1, max_size=4))),
                   ("session_id", "s1")]
    edge = draw(st.integers(0, 19))
    ts = (sent_at - draw(st.integers(0, 30_000)) if edge else
          draw(st.sampled_from([946_684_800_000, 946_684_800_001, 4_102_444_800_000, 4_102_444_799_000])))
    pairs.append(("client_ts", ts))
    if draw(st.booleans()):
        pairs.append(("url", string(draw, draw(urls()))))
        pairs.append(("referrer", string(draw, draw(urls()))))
        pairs.append(("title", string(draw, draw(texts))))
    if draw(st.integers(0, 3)):
        pairs.append(("props", draw(props(name))))
    if draw(st.integers(0, 3)) == 0:
        pairs.append(("context", draw(context())))
    return Obj(tuple(pairs))


@st.composite
def usual_bodies(draw: st.DrawFn) -> bytes:
    sent_at = draw(st.sampled_from([1_764_230_001_000, 1_764_230_001_600, 946_684_800_000, 4_102_444_800_000]))
    batch = draw(st.lists(usual_event(sent_at), min_size=1, max_size=10))
    return emit(Obj((("sent_at", sent_at), ("events", batch))))


bodies = st.one_of(usual_bodies(), hostile_requests().map(lambda sent: sent.body))


# -- the parts -------------------------------------------------------------------------------------


def _outcome(call: Any) -> Any:
    try:
        return call()
    except validate.BatchError as exc:
        return ("refused", exc.reason, exc.error)


def _decoded(d: Any) -> Any:
    if isinstance(d, tuple):
        return d
    typed = None if d.typed is None else [msgspec.json.encode(ev) for ev in d.typed]
    raw = None if d.raw is None else [bytes(r) for r in d.raw]
    return (d.body, d.sent_at, d.k, typed, raw, d.notes)


def _checked(c: validate.Checked) -> Any:
    return ([msgspec.json.encode(ev) for ev in c.accepted], [msgspec.to_builtins(r) for r in c.rejected], c.body)


@pytest.fixture(scope="module")
def doors():
    """Per PII rule set: a door on the fast path and one on the general path (the reference)."""
    with tempfile.TemporaryDirectory() as tmp:
        made = {}
        for pii in PII:
            pair = []
            for fast in (True, False):
                door = Door(Path(tmp) / f"{pii}-{fast}", tenant=tenant(pii), spool={"durability": "os"},
                            privacy={"id_salt": SALT})
                door.endpoint.fast_path = fast
                pair.append(door)
            made[pii] = pair
        yield made
        for pair in made.values():
            for door in pair:
                door.close()


@settings(settings.get_profile(PROFILE), max_examples=400)
@given(body=bodies, pii=st.sampled_from(sorted(PII)), skew=st.sampled_from([0, 600, -5_000, 10**12]))
def test_decode_check_and_scrub_match_the_general_path(doors, body, pii, skew):
    endpoint = doors[pii][0].endpoint
    rules = next(iter(endpoint.rules.values()))
    fast = _outcome(lambda: onepass.decode(body, 32))
    general = _outcome(lambda: validate.decode_envelope(body, 32))
    assert _decoded(fast) == _decoded(general)
    if isinstance(fast, tuple) or not len(fast):
        return
    checked = onepass.check(rules, fast, skew)
    assert _checked(checked) == _checked(rules.check_batch(general, skew))
    scrubber = endpoint.scrubbers[rules.tenant.id]
    try:
        _same_scrub(scrubber, checked, fast)
    finally:
        scrubber.take_counts()  # counted for these calls only: not the door's requests'


def _same_scrub(scrubber: Any, checked: validate.Checked, fast: validate.Decoded) -> None:
    verbatim = fast.typed is not None and not fast.notes
    quick = scrubber.batch(checked, fast.body, verbatim)
    reference = scrubber.batch(checked, fast.body, False)
    assert _checked(quick) == _checked(reference)
    assert (quick is checked) == (reference is checked)  # untouched: the body goes to the spool as received
    if verbatim and not scrubber.may_hold(fast.body) and not scrubber._quick_verbatim(checked, fast.body):
        # the quick look's "nothing here" is a fact: the general scrub changes nothing either
        assert scrubber.batch(checked, fast.body, False) is checked
    per_event = any(m in bytes(ev.context) for ev in reference.accepted for m in (b'"ip"', b'"userAgent"'))
    assert endusers.mentions_end_user(reference.accepted) == per_event


def _frames(door: Door) -> list[SpoolRecord]:
    door.loop.run_until_complete(door.writer.seal())
    out = []
    for path in spool.sealed_segments(door.settings.spool_path):
        out.extend(msgspec.msgpack.decode(frame, type=SpoolRecord) for frame in segment.read(path).frames)
        path.unlink()
    return out


@contextmanager
def fixed_clock():
    """Both doors receive at the same millisecond, so clock-skew checks and records compare."""
    clock = types.SimpleNamespace(time_ns=lambda: FIXED_NS, perf_counter=time.perf_counter)
    with mock.patch.object(events, "time", clock):
        yield


HEADERS = {"content-type": "text/plain;charset=UTF-8", "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
           "origin": "https://shop.example"}


@settings(settings.get_profile(PROFILE), max_examples=250)
@given(body=bodies, pii=st.sampled_from(sorted(PII)))
def test_the_fast_door_answers_and_spools_what_the_general_door_does(doors, body, pii):
    fast, general = doors[pii]
    before = _counters(fast), _counters(general)
    with fixed_clock():
        a, b = fast.post(body, headers=HEADERS), general.post(body, headers=HEADERS)
    assert (a.status, a.headers, a.body) == (b.status, b.headers, b.body)
    assert _frames(fast) == _frames(general)
    assert _counted(before[0], _counters(fast)) == _counted(before[1], _counters(general))


def _counters(door: Door) -> dict[tuple[str, str], float]:
    return {(name, labels): value for name, by in door.metrics.counters.items() for labels, value in by.items()}


def _counted(before: dict, after: dict) -> dict:
    return {key: value - before.get(key, 0) for key, value in after.items() if value != before.get(key, 0)}


# -- the fast path is the one taken ------------------------------------------------------------------


def test_a_usual_batch_never_reaches_the_general_path(doors, monkeypatch):
    """Without this, the comparisons above could hold because every body took the general path."""
    door = doors["default"][0]
    rules = next(iter(door.endpoint.rules.values()))
    scrubber = door.endpoint.scrubbers[rules.tenant.id]

    def general(*args, **kwargs):
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(validate, "decode_envelope", general)
    monkeypatch.setattr(onepass, "decode_envelope", general)
    monkeypatch.setattr(rules, "check_batch", general)
    monkeypatch.setattr(scrubber, "_quick", general)
    batch = {"sent_at": 1_764_230_001_000, "events": [
        {"level": "mid", "name": "page_view", "anonymous_id": "a1", "client_ts": 1_764_230_000_000,
         "url": "https://shop.example/search?q=shoes", "title": "Shoes – 12 items", "props": {"path": "/search"},
         "context": {"locale": "fr-FR", "screen": "1920x1080"}},
        {"level": "mid", "name": "add_to_cart", "anonymous_id": "a1", "props": {"sku": "UT42-DW0K", "price": 129.9}},
        {"level": "low", "name": "click", "anonymous_id": "a1", "props": {"x": 941, "y": 1950}},
    ]}
    r = door.post(msgspec.json.encode(batch), headers=HEADERS)
    assert r.status == 200 and r.json == {"accepted": 3, "rejected": []}
    assert len(_frames(door)) == 1


ARABIC_CARD = "".join(chr(0x660 + int(d)) for d in "4111111111111111")  # Luhn-valid, in Arabic-Indic digits


@pytest.mark.parametrize("url, mark", [
    ("https://shop.example/?api_\u212aey=abc", "api_"),  # the Kelvin sign lower-cases to "k": api_key=, dropped
    # \d is any Unicode digit, once a text holds 13 ASCII digits (here in no run of a card's shape)
    ("https://shop.example/?a=1234&b=5678&c=90123&q=" + ARABIC_CARD, "[card]"),
])
def test_what_only_the_general_path_finds_is_still_scrubbed(doors, url, mark):
    fast, general = doors["default"]
    event = {"level": "mid", "name": "page_view", "anonymous_id": "a1", "client_ts": 1_764_230_000_000, "url": url}
    body = msgspec.json.encode({"sent_at": 1_764_230_001_000, "events": [event]})
    with fixed_clock():
        assert fast.post(body, headers=HEADERS).status == general.post(body, headers=HEADERS).status == 200
    (record,), (reference,) = _frames(fast), _frames(general)
    assert record == reference
    spooled = msgspec.json.decode(record.body)["events"][0]["url"]
    assert spooled != url and (mark in spooled) == (mark == "[card]")


def test_enrichment_is_worked_out_once_per_peer_and_headers_and_kept_within_bounds(doors, monkeypatch):
    endpoint = doors["default"][0].endpoint
    endpoint._enriched.clear()
    calls = []
    real = events.enrich.client_ip
    monkeypatch.setattr(events.enrich, "client_ip", lambda *a: calls.append(a) or real(*a))
    agent = HEADERS["user-agent"]
    first = endpoint.enrichment("203.0.113.9", None, agent)
    assert endpoint.enrichment("203.0.113.9", None, agent) == first and len(calls) == 1
    assert first[0] == "203.0.113.0" and first[1] == agent and first[2].browser == "Firefox"  # anonymised, parsed
    assert endpoint.enrichment("203.0.113.10", None, agent)[0] == "203.0.113.0" and len(calls) == 2
    long = "Mozilla/5.0 " + "x" * events.ENRICHED_KEY_CHARS
    endpoint.enrichment("203.0.113.9", None, long)
    endpoint.enrichment("203.0.113.9", None, long)
    assert len(calls) == 4 and all(key[2] != long for key in endpoint._enriched)  # a long header is not kept
    for n in range(events.ENRICHED_KEPT + 10):
        endpoint.enrichment(f"10.0.{n // 256}.{n % 256}", None, agent)
    assert len(endpoint._enriched) <= events.ENRICHED_KEPT
