"""The same events through a real ``beaconlake up --workers 2`` twice: sequences detected by the
deliverer (``realtime.sequences_from = "spool"``) and by the lake detector (``"lake"``). Both find
the same matches (ids, events), which are those of one detector over the events the lake holds,
and /v1/high-level and /v1/stats count them alike."""

from __future__ import annotations

import time
import uuid

import httpx
import msgspec
import pytest
from lakehelp import SEARCHED, VIEWED_THEN_ADDED, reference
from support import read_lake, start_collector

from beaconlake import config

pytestmark = pytest.mark.slow

S = 1000
ABANDONED = {"name": "abandoned_cart", "within_secs": 30, "steps": [{"name": "add_to_cart"}],
             "not_followed_by": {"name": "checkout", "within_secs": 2}}
DEFINITIONS = [VIEWED_THEN_ADDED, SEARCHED, ABANDONED]
NAMES = [d["name"] for d in DEFINITIONS]
PEOPLE = 9
# The spool detector emits a match once the wall clock passes its deadline plus the grace: the
# events (all within the last 8 s when posted) are all in by then, so it sees what the lake sees.
GRACE_SECS = 10
# The events are up to 8 s old when posted: the lake detector waits that long, plus delivery.
LATENESS_SECS = 10


def story(i: int) -> list[list[dict]]:
    """Person i's requests: lists of events, each ``back_ms`` before the request is sent. Steps in separate requests,
    so they land on either worker; every third person's browser reports its own match."""
    anon = f"p{i}"

    def ev(name, back_ms, level="mid", **props):
        return {"event_id": str(uuid.uuid4()), "level": level, "name": name,
                "anonymous_id": anon, "back_ms": back_ms, "props": props}

    first = ev("product_view", 8_000, category="shoes")
    second = ev("product_view", 5_000 + i, category="shoes")
    search = ev("search", 6_000, q="boots")
    cart = ev("add_to_cart", 4_000, sku=f"s{i}", price=10 + i)  # the starter's schema wants a sku
    requests = [[first, search], [second], [cart, ev("page_view", 3_000)]]
    if i % 2 == 0:
        requests.append([ev("checkout", 3_500)])  # cancels abandoned_cart
    if i % 3 == 0:
        requests.append([ev("viewed_then_added", 3_900, level="high", definition="viewed_then_added",
                            matched_event_ids=[first["event_id"], second["event_id"], cart["event_id"]],
                            source="browser")])
    return requests


STORIES = [story(i) for i in range(PEOPLE)]  # the same events (ids too) for both runs


def post(c, events: list[dict], now: int) -> None:
    body = [{k: v for k, v in e.items() if k != "back_ms"} | {"client_ts": now - e["back_ms"]} for e in events]
    r = httpx.post(f"{c.url}/v1/events?k={c.write_key}", headers={"content-type": "text/plain"},
                   content=msgspec.json.encode({"sent_at": now, "events": body}), timeout=10)
    assert r.status_code == 200 and r.json()["rejected"] == [], r.text


def read(c, path, **params):
    r = httpx.get(f"{c.url}{path}", params=params, headers={"authorization": f"Bearer {c.read_key}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def settled_high_level(c, quiet_secs: float, timeout: float = 30) -> dict:
    """``/v1/high-level`` once it has not changed for ``quiet_secs`` (or at ``timeout``)."""
    deadline = time.monotonic() + timeout
    last, stable_since = None, time.monotonic()
    while time.monotonic() < deadline:
        got = read(c, "/v1/high-level", limit=1000)
        if got != last:
            last, stable_since = got, time.monotonic()
        elif time.monotonic() - stable_since > quiet_secs:
            break
        time.sleep(0.3)
    return last


def started(tmp_path, source: str):
    """A collector detecting from ``source``, the stories posted to it; (collector, when posted)."""
    tmp_path.mkdir()
    c = start_collector(tmp_path, args=["--workers", "2"], config_overrides={
        "tenant": {"sequences": DEFINITIONS},
        "realtime": {"browser_grace_secs": GRACE_SECS, "sequences_from": source, "lake_lateness_secs": LATENESS_SECS,
                     "lake_poll_interval_secs": 0.3},
        "counters": {"type": "memory", "partials_interval_secs": 0.2},
    })
    try:
        now = int(time.time() * 1000)
        for requests in STORIES:
            for events in requests:
                post(c, events, now)
    except BaseException:
        c.stop()
        raise
    return c, now


def settled(c, source: str, now: int) -> dict:
    """What ``c`` says once every match is due; then it is stopped."""
    try:
        # every match is due (the last cart + negation + grace, + lateness for the lake), then nothing may move
        wait_secs = 2 + GRACE_SECS + (LATENESS_SECS if source == "lake" else 0) + 1
        time.sleep(max(0.0, now / 1000 + wait_secs - time.time()))
        last = settled_high_level(c, quiet_secs=3)
        stats = {n: sum(r["count"] for r in read(c, "/v1/stats", name=n, by="hour")["rows"]) for n in NAMES}
        settings = config.load(c.config_path, environ={})
    finally:
        c.stop()
    return {"high_level": last, "stats": stats, "lake": read_lake(c.data_dir), "settings": settings}


def test_lake_detector_finds_what_the_spool_detector_finds(tmp_path):
    # both pipelines at once: each waits out its grace (and the lake its lateness) in wall time
    spool_c, spool_now = started(tmp_path / "spool", "spool")
    try:
        lake_c, lake_now = started(tmp_path / "lake", "lake")
    except BaseException:
        spool_c.stop()
        raise
    try:
        spool = settled(spool_c, "spool", spool_now)
    finally:
        lake = settled(lake_c, "lake", lake_now)

    def server(result):
        return {e["event_id"]: (e["name"], e["anonymous_id"], tuple(e["matched_event_ids"]))
                for e in result["high_level"]["events"] if e["source"] == "server"}

    # one detector over the events the lake holds, in event-time order
    events = [{"event_id": r["event_id"], "level": r["level"], "name": r["name"], "anonymous_id": r["anonymous_id"],
               "client_ts": r["event_ts"], "props": msgspec.json.decode(r["props"]) if r["props"] else None}
              for r in lake["lake"] if r["source"] != "server"]
    expected = {k: v[:3] for k, v in reference(lake["settings"], events).items()}
    browser = {(r["anonymous_id"]) for r in lake["lake"] if r["level"] == "high" and r["source"] != "server"}
    expected = {k: v for k, v in expected.items() if not (v[0] == "viewed_then_added" and v[1] in browser)}
    assert len(expected) >= PEOPLE, expected  # each definition matched someone
    assert server(spool) == expected
    assert server(lake) == expected
    assert lake["high_level"]["counts"] == spool["high_level"]["counts"]
    assert lake["stats"] == spool["stats"]
    # the lake holds each server match once
    matches = [r["event_id"] for r in lake["lake"] if r["source"] == "server"]
    assert sorted(matches) == sorted(expected)


def test_lake_detector_killed_repeatedly_publishes_every_match_once(tmp_path):
    """kill -9 of the lake detector's process (``bl-sequences``) while people shop: ``up`` starts
    it again, the new one takes the lease and goes on from the checkpoint (an outbox left behind
    is published again, to the same file and ids). Every match of the events the lake holds is in
    the lake and the index exactly once."""
    from faults.fault_procs import kill9, wait_role

    c = start_collector(tmp_path, config_overrides={
        "tenant": {"sequences": DEFINITIONS},
        "realtime": {"browser_grace_secs": 1, "sequences_from": "lake", "lake_lateness_secs": 3,
                     "lake_poll_interval_secs": 0.2},
    })
    killed = set()
    try:
        for round_no in range(4):
            [pid] = wait_role(c.proc.pid, "bl-sequences", exclude=killed)
            for i in range(round_no * PEOPLE, (round_no + 1) * PEOPLE):
                now = int(time.time() * 1000)
                post(c, [{"event_id": str(uuid.uuid4()), "level": "mid", "name": name, "anonymous_id": f"k{i}",
                          "back_ms": back, "props": {"category": "hats"}} for name, back in
                         (("search", 900), ("product_view", 600), ("product_view", 300))], now)
                time.sleep(0.1)
            kill9(pid)
            killed.add(pid)
        wait_role(c.proc.pid, "bl-sequences", exclude=killed)
        time.sleep(3 + 1 + 3)  # lateness, grace, and a few steps
        last = settled_high_level(c, quiet_secs=2)
        settings = config.load(c.config_path, environ={})
    finally:
        c.stop()
    rows = read_lake(c.data_dir)
    events = [{"event_id": r["event_id"], "level": r["level"], "name": r["name"], "anonymous_id": r["anonymous_id"],
               "client_ts": r["event_ts"], "props": msgspec.json.decode(r["props"]) if r["props"] else None}
              for r in rows if r["source"] != "server"]
    expected = reference(settings, events)
    assert len(expected) == 4 * PEOPLE  # searched_then_viewed, one per person
    published = [r["event_id"] for r in rows if r["source"] == "server"]
    assert sorted(published) == sorted(expected)  # each once in the lake
    indexed = [e["event_id"] for e in last["events"] if e["source"] == "server"]
    assert sorted(indexed) == sorted(expected) and last["counts"] == {"searched_then_viewed": 4 * PEOPLE}
