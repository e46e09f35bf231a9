"""The cluster test's traffic: people whose steps land on different collectors.

Each person's events are spread over several batches, and batches go round-robin over the
collector nodes, so a person's first step is usually acknowledged by one node and the next by
another: exactly what per-node sequence detection gets wrong. Event times are fixed relative to
the moment a batch is sent (``client_ts = sent_at - ago``), so the same batches sent to a
single-node reference at the same moment give the same event times there, and which people match
a sequence does not depend on how long a post took: every gap is far from the window's edge.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import msgspec

SEQUENCE = {"name": "viewed_then_added", "within_secs": 120,
            "steps": [{"name": "product_view", "where": [{"field": "props.category", "op": "exists"}]},
                      {"name": "add_to_cart"}]}
BATCH_EVENTS = 5
# a browser's: httpx's own agent makes every event a bot's, and analyze leaves bots without profiles
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"


def _event(name: str, anon: str, ago_secs: float, **props: object) -> dict:
    return {"level": "mid", "name": name, "anonymous_id": anon, "event_id": str(uuid.uuid4()),
            "url": f"https://shop.example/{name}", "props": props, "_ago_ms": int(ago_secs * 1000)}


def person_events(i: int) -> list[dict]:
    """A person's visit, oldest first. Kinds (i % 4): 0 views then adds 3 s later (a match),
    1 adds to the cart before viewing (the steps out of order: no match), 2 only views, 3 views,
    reads, views another product and adds 4 s after the first view (one match). Each ends with
    a page view 20 s ago, inside ``realtime.allowed_lateness_secs``, so ``/v1/stats`` counts it.
    Every event is at most 50 s old when sent: inside the lake detector's lateness (60 s in the
    cluster's config), so the detector on the jobs node sees every one of them in time."""
    anon = f"person-{i:03d}"
    kind = i % 4
    if kind == 1:
        return [_event("page_view", anon, 50), _event("add_to_cart", anon, 46, sku="s1"),
                _event("product_view", anon, 45, category="shoes"), _event("page_view", anon, 20)]
    events = [_event("page_view", anon, 50), _event("product_view", anon, 45, category="shoes")]
    if kind == 0:
        events.append(_event("add_to_cart", anon, 42, sku="s1"))
    elif kind == 3:
        events += [_event("page_view", anon, 44), _event("product_view", anon, 43, category="bags"),
                   _event("add_to_cart", anon, 41, sku="b1")]
    return [*events, _event("page_view", anon, 20)]


def expected_matchers(people: int) -> set[str]:
    return {f"person-{i:03d}" for i in range(people) if i % 4 in (0, 3)}


def batches(people: int, extra_events: int = 0) -> list[list[dict]]:
    """Every person's events, step by step (all first steps, then all second steps...), cut into
    batches of ``BATCH_EVENTS``; ``extra_events`` more page views of other people at the end."""
    visits = [person_events(i) for i in range(people)]
    ordered = [v[step] for step in range(max(map(len, visits), default=0)) for v in visits if step < len(v)]
    ordered += [_event("page_view", f"visitor-{j:05d}", 30, path=f"/p/{j % 50}") for j in range(extra_events)]
    return [ordered[k:k + BATCH_EVENTS] for k in range(0, len(ordered), BATCH_EVENTS)]


@dataclass
class Sent:
    acknowledged: set[str] = field(default_factory=set)  # event ids of 200 answers
    per_node: dict[str, int] = field(default_factory=dict)  # batches acknowledged, by node url


def post(url: str, write_key: str, events: Sequence[dict], sent_at: int) -> httpx.Response:
    body = {"sent_at": sent_at, "events": [{k: v for k, v in e.items() if k != "_ago_ms"}
                                           | {"client_ts": sent_at - e["_ago_ms"]} for e in events]}
    # a new connection per batch: a load balancer's round robin spreads connections, not requests
    return httpx.post(f"{url}/v1/events?k={write_key}", headers={"content-type": "text/plain", "user-agent": BROWSER},
                      content=msgspec.json.encode(body), timeout=30)


def send_round_robin(urls: Sequence[str], write_key: str, all_batches: list[list[dict]],
                     also: Callable[[list[dict], int], None] | None = None) -> Sent:
    """Batch k to ``urls[k % len(urls)]``; ``also(batch, sent_at)`` gets each batch too (the
    single-node reference, with the same ``sent_at`` and so the same event times)."""
    sent = Sent()
    for k, batch in enumerate(all_batches):
        url = urls[k % len(urls)]
        sent_at = int(time.time() * 1000)
        r = post(url, write_key, batch, sent_at)
        assert r.status_code == 200 and r.json()["accepted"] == len(batch), (url, r.status_code, r.text)
        sent.acknowledged.update(e["event_id"] for e in batch)
        sent.per_node[url] = sent.per_node.get(url, 0) + 1
        if also is not None:
            also(batch, sent_at)
    return sent
