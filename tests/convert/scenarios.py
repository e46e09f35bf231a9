"""Hand-built event streams whose sessions are known, plus a seeded random stream.

Each scenario is one anonymous id (or a few) doing one thing the rules must get right; the
expected sessions are written next to the events, not computed by the code under test.
"""

from __future__ import annotations

import json
import random
import uuid

from rawlake import DAY, HOUR, MIN, event, ms

T0 = ms("2026-03-10T00:00:00")  # a Tuesday
SCHEMA = {
    "type": "object",
    "properties": {
        "sku": {"type": "string"},
        "price": {"type": "number"},
        "qty": {"type": "integer"},
        "gift": {"type": ["boolean", "null"]},
        "meta": {"type": "object"},  # not a simple type: stays in props only
    },
}


def shop_tenant_config() -> dict:
    return {"schemas": [{"level": "mid", "name": "add_to_cart", "schema": SCHEMA}]}


def scenario_events() -> tuple[list[dict], list[dict]]:
    """(first delivery, retried copies): the copies go to a second segment, received later."""
    ev: list[dict] = []
    at = lambda h, m=0, s=0, ms_=0: T0 + h * HOUR + m * MIN + s * 1000 + ms_

    # gaps around 30 minutes
    ev += [event("gap-under", at(10)), event("gap-under", at(10, 29, 59, 999), "click", "low")]
    ev += [event("gap-exact", at(10)), event("gap-exact", at(10, 30), "click", "low")]
    ev += [event("gap-over", at(10)), event("gap-over", at(10, 30, 0, 1))]
    # a session across midnight
    ev += [
        event("midnight", at(23, 50), page_view_id="pv-m1"),
        event("midnight", at(24, 10), page_view_id="pv-m2"),
        event("midnight", at(24, 15), "page_leave", props={"engaged_ms": 4000, "max_scroll_pct": 10}, page_view_id="pv-m2"),
    ]
    # activity every 20 minutes for 50 hours: cut at 24 h and 48 h from its start
    ev += [event("marathon", T0 + i * 20 * MIN, "pointer_move", "low") for i in range(151)]
    # identify in the middle of a session
    ev += [
        event("ident", at(12), page_view_id="pv-i1"),
        event("ident", at(12, 1), "click", "low", page_view_id="pv-i1"),
        event("ident", at(12, 2), "identify", user_id="u-42", props={"traits": {"plan": "pro"}}, page_view_id="pv-i1"),
        event("ident", at(12, 5), user_id="u-42", page_view_id="pv-i2"),
    ]
    # page views with engagement, scroll depth, clicks, UTM and a referrer
    landing = "https://shop.example/landing?utm_source=news&utm_medium=email&utm_campaign=spring%20sale+2026"
    ev += [
        event("reader", at(14), url=landing, referrer="https://www.Google.com/search?q=boots", page_view_id="pv-r1",
              context={"locale": "de-DE", "tz": "Europe/Berlin", "country": "de"}),
        event("reader", at(14, 0, 20), "scroll", "low", props={"depth_pct": 30}, url=landing, page_view_id="pv-r1"),
        event("reader", at(14, 0, 30), "click", "low", url=landing, page_view_id="pv-r1"),
        event("reader", at(14, 1), "scroll", "low", props={"depth_pct": 80}, url=landing, page_view_id="pv-r1"),
        event("reader", at(14, 2), "page_leave", props={"engaged_ms": 45000, "max_scroll_pct": 75}, url=landing, page_view_id="pv-r1"),
        event("reader", at(14, 2, 5), url="https://shop.example/p/boots", referrer=landing, page_view_id="pv-r2"),
        event("reader", at(14, 3), "page_leave", props={"engaged_ms": 20000, "max_scroll_pct": 40},
              url="https://shop.example/p/boots", page_view_id="pv-r2"),
    ]
    # a bounce, a bot, a high-level event, a tenant schema's event, a page view without the tracker
    ev += [
        event("bouncer", at(15), page_view_id="pv-b1"),
        event("bouncer", at(15, 0, 3), "page_leave", props={"engaged_ms": 3000, "max_scroll_pct": 0}, page_view_id="pv-b1"),
    ]
    ev += [event("crawler", at(16), is_bot=True), event("crawler", at(16, 0, 1), is_bot=True)]
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    ev += [
        event("buyer", at(17), event_id=ids[0], page_view_id="pv-y1"),
        event("buyer", at(17, 1), "add_to_cart", event_id=ids[1],
              props={"sku": "B-42", "price": 129.5, "qty": 2, "gift": True, "meta": {"x": 1}}, page_view_id="pv-y1"),
        event("buyer", at(17, 1, 1), "viewed_two_then_cart", "high",
              props={"definition": "viewed_two_then_cart", "matched_event_ids": ids, "source": "browser"}),
    ]
    ev += [
        event("sdk", at(18), context={}, url="https://shop.example/from-sdk"),
        event("sdk", at(18, 0, 10), "click", "low", context={}),
    ]
    # the same anonymous id in another tenant is someone else
    ev += [event("twin", at(19)), event("twin", at(19, 5), tenant="blog")]

    # delivered twice: the copy comes back 5 s later in another segment; one copy of an event
    # near midnight lands on the next day (its clock correction differs by 200 ms)
    first = event("dup", at(20), page_view_id="pv-d1")
    second = event("dup", at(20, 1), "click", "low", page_view_id="pv-d1")
    edge = event("dup-edge", at(23, 59, 59, 900))
    ev += [first, second, edge]
    copies = [
        {**first, "received_at": first["received_at"] + 5000, "title": "retried copy"},
        {**edge, "event_ts": edge["event_ts"] + 200, "received_at": edge["received_at"] + 5000, "title": "retried copy"},
    ]
    return ev, copies


def random_events(seed: int = 7, visitors: int = 40, days: int = 3) -> tuple[list[dict], list[dict]]:
    """Tracker-like traffic: sessions of page views with low-level events, identifies, high-level
    events, and 2% of events delivered twice. Returns (events, retried copies)."""
    rnd = random.Random(seed)
    events: list[dict] = []
    for v in range(visitors):
        anon = f"r{seed}-{v}"
        t = T0 + rnd.randrange(0, days * DAY - 6 * HOUR)
        user = None
        for _visit in range(rnd.randint(1, 4)):
            for _view in range(rnd.randint(1, 4)):
                pv = str(uuid.uuid4())
                url = rnd.choice(["https://shop.example/", "https://shop.example/c/shoes?utm_source=ads&utm_medium=cpc",
                                  "https://shop.example/p/1", "https://shop.example/search?q=tent"])
                ctx = {"locale": "en-US", "tz": "America/New_York", "page_view_id": pv}
                events.append(event(anon, t, url=url, user_id=user, context=ctx, referrer=rnd.choice([None, "https://duckduckgo.com/"])))
                for _ in range(rnd.randint(0, 8)):
                    t += rnd.randrange(200, 40_000)
                    name = rnd.choice(["click", "scroll", "pointer_move", "touch", "rage_click"])
                    props = {"depth_pct": rnd.randint(0, 100)} if name == "scroll" else {"x": 1}
                    events.append(event(anon, t, name, "low", url=url, user_id=user, context=ctx, props=props))
                if rnd.random() < 0.1:
                    user = user or f"user-{v}"
                    t += 1000
                    events.append(event(anon, t, "identify", user_id=user, context=ctx, props={"traits": {}}))
                if rnd.random() < 0.1:
                    t += 500
                    events.append(event(anon, t, "checkout_intent", "high", user_id=user, context=ctx,
                                        props={"definition": "checkout_intent", "matched_event_ids": [events[-1]["event_id"]], "source": "server"}))
                t += rnd.randrange(1000, 120_000)
                events.append(event(anon, t, "page_leave", url=url, user_id=user, context=ctx,
                                    props={"engaged_ms": rnd.randint(0, 90_000), "max_scroll_pct": rnd.randint(0, 100)}))
                t += rnd.randrange(1000, 60_000)
            t += rnd.choice([31 * MIN, 2 * HOUR, 9 * HOUR])
    copies = [{**e, "received_at": e["received_at"] + 3000} for e in events if rnd.random() < 0.02]
    return events, copies


def props_of(row: dict) -> dict:
    return json.loads(row["props"]) if row["props"] else {}


def small_delivery(events: list[dict]) -> list[dict]:
    """A few events after a converted stream (fixed ids, so every engine gets the same files): one
    visitor carries on, one identifies, one sends an event late into an earlier gap, a copy of a
    converted event arrives received earlier, and a newcomer."""
    by_anon: dict[str, list[dict]] = {}
    for e in sorted(events, key=lambda e: e["event_ts"]):
        by_anon.setdefault(e["anonymous_id"], []).append(e)
    a, b, c = (by_anon[k] for k in sorted(by_anon)[:3])
    return [
        event(a[-1]["anonymous_id"], a[-1]["event_ts"] + 4000, "click", "low", event_id="wave-1"),
        event(b[-1]["anonymous_id"], b[-1]["event_ts"] + 6000, "identify", user_id="u-wave", event_id="wave-2"),
        event(c[0]["anonymous_id"], c[0]["event_ts"] - 25 * MIN, event_id="wave-3", received_at=c[0]["received_at"] + DAY),
        {**b[0], "received_at": b[0]["received_at"] - 500, "title": "earlier copy"},
        event("wave-newcomer", a[-1]["event_ts"] + 60_000, event_id="wave-4"),
    ]
