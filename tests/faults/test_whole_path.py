"""The invariant of the whole path, searched by Hypothesis: whatever a client sends to a real
``beaconlake up`` over HTTP, every answer is a 2xx or a 4xx (never a 5xx, never a hang), and
every event it acknowledged is delivered to the raw lake and converted into the Iceberg
``events`` table exactly once, and nothing else is.

The bodies are the door's (``tests/ingest/collector/test_door_properties.py``): valid events,
half of them with one hostile change (invalid UTF-8, lone surrogates, NaN and 1e999, deep
nesting, duplicate keys, unknown fields, over-limit values...), in envelopes that may be
gzipped (one member or two), given a BOM, cut short or overwritten in a few bytes. Each event
gets an explicit UUID (one in fifty reuses the one before: two events, one id), so an
acknowledgement names ids; a fifth of the batches are sent twice,
as a client does that resends after a lost answer (the raw lake then holds them twice, the
``events`` table once). Event times are kept within the last two days: convert's cost is per
day, and the door's tests cover the range of times.

One collector serves every example; at the end it is stopped (delivering the rest), convert
runs (the real job), and the lake and the table are compared with the ledger of answers.
``HYPOTHESIS_PROFILE=ci`` derandomizes. About a minute on two cores.
"""

from __future__ import annotations

import collections
import gzip
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fault_checks import lake_ids, table_ids
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ingest" / "collector"))
import test_door_properties as door  # noqa: E402  (the door's strategies: one home for hostile input)

pytestmark = pytest.mark.slow

settings.register_profile("whole-path", max_examples=800, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("whole-path-ci", parent=settings.get_profile("whole-path"), derandomize=True)
PROFILE = "whole-path-ci" if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else "whole-path"
DAY_MS = 86_400_000
TIMEOUT_SECS = 10.0
LAST_ID: list[str | None] = [None]


def is_uuid(value: object) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def plain_ms(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 946_684_800_000 <= value <= 4_102_444_800_000


@dataclass
class Sent:
    body: bytes
    headers: dict[str, str]
    ids: list[str | None] | None  # each event's id, when the envelope is intact (None: one we did not name)
    named: set[str] = field(default_factory=set)  # every id we put in the body
    twice: bool = False


@st.composite
def event_with_id(draw: st.DrawFn, now: int) -> tuple[door.Obj, str | None]:
    """A door event whose id is ours and whose time is recent, unless its hostile change is to
    one of those two fields (then it stays as the door made it)."""
    ev = draw(door.events())
    pairs = list(ev.pairs)
    ids = [v for k, v in pairs if k == "event_id"]
    ours = None
    if all(is_uuid(v) for v in ids):  # absent, or well-formed: replace with an id we know
        # not drawn: Hypothesis favours a few values, and ids must be unique but for the resends
        # (and for a client that gives two events one id, one time in fifty)
        ours = LAST_ID[0] if LAST_ID[0] and draw(st.integers(0, 49)) == 23 else str(uuid.uuid4())
        LAST_ID[0] = ours
        pairs = [p for p in pairs if p[0] != "event_id"] + [("event_id", ours)]
    ts = [v for k, v in pairs if k == "client_ts"]
    if all(plain_ms(v) for v in ts):
        pairs = [p for p in pairs if p[0] != "client_ts"] + [("client_ts", now - draw(st.integers(0, 2 * DAY_MS)))]
    return door.Obj(tuple(pairs)), ours


@st.composite
def requests(draw: st.DrawFn) -> Sent:
    now = int(time.time() * 1000)
    batch = draw(st.lists(event_with_id(now), min_size=1, max_size=10))
    body = door.emit(door.Obj((("sent_at", now), ("events", [ev for ev, _ in batch]))))
    ids: list[str | None] | None = [i for _, i in batch]
    headers = {"content-type": draw(st.sampled_from(["text/plain;charset=UTF-8", "application/json",
                                                     "application/json; charset=utf-8"]))}
    mangle = draw(st.integers(0, 99))
    if mangle < 4:
        body = b"\xef\xbb\xbf" + body  # a BOM: the same events
    elif mangle < 8:
        body = body[: draw(st.integers(0, len(body) - 1))]
        ids = None
    elif mangle < 12:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + draw(st.binary(min_size=1, max_size=3)) + body[at + 1:]
        ids = None
    if draw(st.integers(0, 99)) < 20:
        cut = draw(st.integers(0, len(body)))
        body = gzip.compress(body[:cut]) + gzip.compress(body[cut:]) if draw(st.booleans()) else gzip.compress(body)
        headers["content-encoding"] = "gzip"
    return Sent(body, headers, ids, {i for _, i in batch if i}, twice=40 <= draw(st.integers(0, 99)) < 60)


@dataclass
class Ledger:
    """What the collector said yes to."""

    certain: collections.Counter = field(default_factory=collections.Counter)  # id -> times acknowledged
    maybe: set[str] = field(default_factory=set)  # our ids in mangled bodies it accepted events from
    accepted: int = 0  # events acknowledged in all
    answers: collections.Counter = field(default_factory=collections.Counter)


def send(client: httpx.Client, url: str, sent: Sent, ledger: Ledger) -> None:
    for _ in range(2 if sent.twice else 1):
        r = client.post(url, content=sent.body, headers=sent.headers)  # a hang fails here, by the timeout
        ledger.answers[r.status_code] += 1
        assert 200 <= r.status_code < 500, (r.status_code, r.text[:500], sent.body[:300])
        answer = r.json()
        if r.status_code >= 400:
            assert answer.get("error") and answer.get("reason"), answer
        if r.status_code != 200:
            continue
        ledger.accepted += answer["accepted"]
        rejected = {e["index"] for e in answer["rejected"]}
        if sent.ids is None:
            ledger.maybe |= sent.named
            continue
        assert answer["accepted"] + len(rejected) == len(sent.ids), answer
        ledger.certain.update(i for n, i in enumerate(sent.ids) if n not in rejected and i is not None)


def test_every_acknowledged_event_is_delivered_and_converted_exactly_once(up):
    collector = up(workers=2)
    ledger = Ledger()
    url = f"{collector.url}/v1/events?k={collector.write_key}"
    with httpx.Client(timeout=TIMEOUT_SECS) as client:

        @settings(settings.get_profile(PROFILE))
        @given(sent=requests())
        def example(sent: Sent) -> None:
            send(client, url, sent, ledger)

        example()
    print(f"answers {dict(ledger.answers)}; {ledger.accepted} events acknowledged, {sum(ledger.certain.values())} "
          f"of them by id ({len(ledger.certain)} ids), {len(ledger.maybe)} ids in damaged bodies")
    assert ledger.answers[200] > 50 and len(ledger.certain) > 200, "too few acknowledgements to prove anything"
    collector.stop()  # delivers what the spool holds

    raw = lake_ids(collector.data_dir)
    assert sum(raw.values()) == ledger.accepted, "the raw lake does not hold as many rows as were acknowledged"
    for event_id, times in ledger.certain.items():
        if event_id not in ledger.maybe:
            assert raw[event_id] == times, (event_id, raw[event_id], times)
    unnamed = sum(n for i, n in raw.items() if i not in ledger.certain and i not in ledger.maybe)
    assert unnamed <= ledger.accepted - sum(ledger.certain.values())

    from beaconlake import config
    from beaconlake.convert.run import convert

    summary = convert(config.load(collector.config_path), progress=False)
    assert not summary.quarantined, summary.quarantined  # every file delivery wrote converts
    events = table_ids(collector.config_path)
    assert events.keys() == raw.keys(), (len(events.keys() - raw.keys()), len(raw.keys() - events.keys()))
    twice = {i: n for i, n in events.items() if n > 1}
    assert not twice, f"{len(twice)} events in the events table more than once, e.g. {list(twice.items())[:3]}"
