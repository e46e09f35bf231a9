"""A small shop with one person to forget: events through the real collector app (in process),
delivered by the real deliverer (with its realtime consumer), converted and analyzed.

The person ("P") browses from two browsers (two anonymous ids) and signs in on both as one user:
an erasure naming only the first anonymous id must forget all three ids. Everything P sends holds
a unique marker, and one of P's events is rejected by the tenant's schema, so P is in the
rejected area too.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from starlette.testclient import TestClient

from beaconlake import config
from beaconlake.schedule.run import run_once
from beaconlake.serve.app import create_app
from beaconlake.up import build_deliverer

TENANT = {"id": "shop", "write_key": "wk_shopshopshopshopshop", "read_key": "rk_shopshopshopshopshop",
          "admin_key": "ak_shopshopshopshopshop"}
SEQUENCES = [{"name": "considered_then_added", "within_secs": 600, "steps": [
    {"name": "product_view", "where": [{"field": "props.category", "op": "exists"}]},
    {"name": "product_view", "same": ["props.category"]},
    {"name": "add_to_cart"},
]}]
CART_SCHEMA = {"level": "mid", "name": "add_to_cart", "schema": {"type": "object", "required": ["sku"]}}


def ev(name: str, anon: str, ts: int, user_id: str | None = None, **props: Any) -> dict[str, Any]:
    out = {"level": "mid", "name": name, "anonymous_id": anon, "client_ts": ts, "event_id": str(uuid.uuid4()),
           "url": f"https://shop.example/p/{name}?q={props.get('marker', 'x')}", "props": props}
    if user_id:
        out["user_id"] = user_id
    return out


def visit(anon: str, ts: int, user_id: str | None = None, **marked: Any) -> list[dict[str, Any]]:
    """A page view, two product views of one category and an add to cart (a sequence match)."""
    return [ev("page_view", anon, ts, user_id, **marked),
            ev("product_view", anon, ts + 1000, user_id, category="tents", sku="t1", **marked),
            ev("product_view", anon, ts + 2000, user_id, category="tents", sku="t2"),
            ev("add_to_cart", anon, ts + 3000, user_id, sku="t2", price=120, **marked)]


@dataclass
class Shop:
    folder: Path
    settings: config.Settings
    client: TestClient
    marker: str = field(default_factory=lambda: "mk" + uuid.uuid4().hex)
    p_anon1: str = field(default_factory=lambda: "pa1-" + uuid.uuid4().hex)
    p_anon2: str = field(default_factory=lambda: "pa2-" + uuid.uuid4().hex)
    p_user: str = field(default_factory=lambda: "pu-" + uuid.uuid4().hex)
    others: list[str] = field(default_factory=lambda: [f"other-{i}-{uuid.uuid4().hex[:8]}" for i in range(4)])

    @property
    def p_ids(self) -> list[str]:
        return [self.p_anon1, self.p_anon2, self.p_user]

    def post(self, events: list[dict[str, Any]]) -> None:
        body = msgspec.json.encode({"sent_at": int(time.time() * 1000), "events": events})
        r = self.client.post(f"/v1/events?k={TENANT['write_key']}", content=body,
                             headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text

    def seal(self) -> None:
        self.client.portal.call(self.client.app.collector.writer.seal)

    def deliver(self) -> None:
        """What the deliverer process does: seal the worker's segment, then a realtime + lake pass."""
        self.seal()
        d = build_deliverer(self.settings)
        d.run_once()
        d.run_once()  # the detector's own segment: the server's matches
        d.close()

    def run(self) -> dict[str, Any]:
        record = run_once(self.settings, "interval")
        assert record["status"] == "ok", record
        return record

    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {TENANT['admin_key']}"}

    def close(self) -> None:
        self.client.__exit__(None, None, None)


def make(folder: Path, extra: dict[str, Any] | None = None) -> Shop:
    raw = {
        "tenants": [{**TENANT, "sequences": SEQUENCES, "schemas": [CART_SCHEMA]}],
        "spool": {"min_free_disk_bytes": 0},
        "realtime": {"browser_grace_secs": 0},
        "schedule": {"enabled": False},
        "privacy": {"suppression_refresh_secs": 0},
        **(extra or {}),
    }
    settings = config.parse(raw, folder, environ={})
    client = TestClient(create_app(settings))
    client.__enter__()
    shop = Shop(folder, settings, client)
    t0 = int(time.time() * 1000) - 2 * 3_600_000
    m = shop.marker
    events = visit(shop.p_anon1, t0, marker=m) + [ev("identify", shop.p_anon1, t0 + 5000, shop.p_user, marker=m)]
    events += visit(shop.p_anon2, t0 + 600_000, shop.p_user, marker=m)
    events += [ev("add_to_cart", shop.p_anon1, t0 + 9000, marker=m)]  # no sku: rejected, with the marker
    for i, anon in enumerate(shop.others):
        events += visit(anon, t0 + i * 60_000, f"user-{anon}" if i % 2 else None)
    shop.post(events)
    shop.deliver()
    shop.run()
    # a second day of the others, converted by a second run: the tables get more snapshots
    shop.post([e for anon in shop.others for e in visit(anon, t0 + 3_600_000)])
    shop.deliver()
    shop.run()
    return shop
