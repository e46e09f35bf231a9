"""Two tenants on one real collector app, with converted and analyzed data, for the tests that
check what each key can reach: every string tenant B sends holds "rival", so a response that
tenant A's key gets must not contain it."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from starlette.testclient import TestClient

from beaconlake import config
from beaconlake.schedule.run import run_once
from beaconlake.serve.app import create_app
from beaconlake.up import build_deliverer

SHOP = {"id": "shop", "write_key": "wk_shopshopshopshopshop", "read_key": "rk_shopshopshopshopshop",
        "admin_key": "ak_shopshopshopshopshop"}
RIVAL = {"id": "rival", "write_key": "wk_rivalrivalrivalrival", "read_key": "rk_rivalrivalrivalrival",
         "admin_key": "ak_rivalrivalrivalrival"}
SERVER_ADMIN = "sk_serverserverserverserver"
SEQUENCES = [{"name": "considered_then_added", "within_secs": 600, "steps": [
    {"name": "product_view", "where": [{"field": "props.category", "op": "exists"}]},
    {"name": "product_view", "same": ["props.category"]},
    {"name": "add_to_cart"},
]}]
CART_SCHEMA = {"level": "mid", "name": "add_to_cart", "schema": {"type": "object", "required": ["sku"]}}
# Person ids a URL path cannot carry as they are: each must reach the routes whole.
ODD_IDS = ["alice/1", "100%", "a%2Fb", "what?", "hash#tag", "two words", "emoji \U0001f600", "/lead", "trail/"]


def _ev(name: str, anon: str, ts: int, host: str, **props: Any) -> dict[str, Any]:
    return {"level": "mid", "name": name, "anonymous_id": anon, "client_ts": ts, "event_id": str(uuid.uuid4()),
            "url": f"https://{host}/p/{name}", "props": props}


def visit(anon: str, ts: int, host: str, user_id: str | None = None) -> list[dict[str, Any]]:
    """A page view, two product views of one category and an add to cart: a sequence match."""
    evs = [_ev("page_view", anon, ts, host), _ev("product_view", anon, ts + 1000, host, category="tents", sku="t1"),
           _ev("product_view", anon, ts + 2000, host, category="tents", sku="t2"),
           _ev("add_to_cart", anon, ts + 3000, host, sku="t2", price=120)]
    if user_id:
        evs.append({**_ev("identify", anon, ts + 4000, host), "user_id": user_id})
    return evs


@dataclass
class TwoTenants:
    client: TestClient
    settings: config.Settings
    accepted: dict[str, int]
    rejected: dict[str, int]
    runs: dict[str, dict[str, Any]]  # "all" and "rival": the records of the runs made

    def post(self, key: str, events: list[dict[str, Any]]) -> Any:
        now = int(time.time() * 1000)
        return self.client.post(f"/v1/events?k={key}", content=msgspec.json.encode({"sent_at": now, "events": events}),
                                headers={"content-type": "application/json"})

    def deliver(self) -> None:
        """What the deliverer process does: seal the worker's segment, then a realtime + lake pass."""
        self.client.portal.call(self.client.app.collector.writer.seal)
        d = build_deliverer(self.settings)  # with the realtime consumer, as `up` builds it
        d.run_once()
        d.run_once()  # the detector's own segment: the server's matches
        d.close()


def make(folder: Path) -> TwoTenants:
    raw = {
        "server": {"admin_key": SERVER_ADMIN},
        "tenants": [{**SHOP, "sequences": SEQUENCES, "schemas": [CART_SCHEMA]},
                    {**RIVAL, "sequences": SEQUENCES, "schemas": [CART_SCHEMA]}],
        "spool": {"min_free_disk_bytes": 0},
        "realtime": {"browser_grace_secs": 0},
        "schedule": {"enabled": False},
    }
    settings = config.parse(raw, folder, environ={})
    client = TestClient(create_app(settings))
    client.__enter__()
    world = TwoTenants(client, settings, {}, {}, {})
    now = int(time.time() * 1000) - 3_600_000
    shop = [e for i, anon in enumerate(ODD_IDS) for e in visit(anon, now + i * 60_000, "shop.example")]
    shop += visit("shopper-2", now, "shop.example", user_id="shop-user-1")
    rival = [e for i in range(6) for e in visit(f"rival-person-{i}", now + i * 60_000, "rival.example",
                                                user_id=f"rival-user-{i}")]
    rival += [_ev("rival_secret_event", "rival-person-0", now, "rival.example", note="rival")]
    bad = [_ev("add_to_cart", "rival-person-0", now, "rival.example", price=1)]  # no sku: the schema rejects it
    for key, events in ((SHOP["write_key"], shop), (RIVAL["write_key"], rival + bad * 3)):
        r = world.post(key, events)
        assert r.status_code == 200, r.text
    world.accepted = {"shop": len(shop), "rival": len(rival)}
    world.rejected = {"shop": 0, "rival": 3}
    world.deliver()
    world.runs["all"] = run_once(settings, "interval")
    assert world.runs["all"]["status"] == "ok", world.runs["all"]
    # a run of the rival alone, with figures that are the rival's own
    assert world.post(RIVAL["write_key"], visit("rival-person-late", now, "rival.example")).status_code == 200
    world.accepted["rival"] += 4
    world.deliver()
    world.runs["rival"] = run_once(settings, "requested (rival)", tenants=["rival"])
    assert world.runs["rival"]["status"] == "ok", world.runs["rival"]
    return world
