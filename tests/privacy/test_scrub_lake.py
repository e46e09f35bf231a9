"""PII scrubbing checked where it matters: in the lake the real collector and deliverer write
(raw and rejected), for each rule, and in /metrics by rule."""

from __future__ import annotations

import time

import msgspec
from starlette.testclient import TestClient
from support import read_lake

from beaconlake import config
from beaconlake.serve.app import create_app
from beaconlake.up import build_deliverer

PII = {"hash_query_params": ["uid"], "drop_props": ["password"], "hash_props": ["customer"],
       "drop_context": ["ip_hint"], "redact_phones": True}
SHOP = {"id": "shop", "write_key": "wk_shopshopshopshopshop", "read_key": "rk_shopshopshopshopshop", "pii": PII,
        "schemas": [{"level": "mid", "name": "add_to_cart", "schema": {"type": "object", "required": ["sku"]}}]}
OFF = {"id": "off", "write_key": "wk_offoffoffoffoffoff", "read_key": "rk_offoffoffoffoffoff", "pii": {"enabled": False}}
URL = "https://shop.example/reset?email=ann%40mail.example&page=2&uid=42&token=t0k#access_token=abc"
TITLE = "Order for bob@mail.example, card 4111 1111 1111 1111, call +33 6 12 34 56 78"
PROPS = {"password": "hunter2", "customer": "C-9", "search": "carl@mail.example", "note": "5500-0055-5555-5559"}


def _post(client, key: str, events: list[dict]) -> None:
    r = client.post(f"/v1/events?k={key}", headers={"content-type": "application/json"},
                    content=msgspec.json.encode({"sent_at": int(time.time() * 1000), "events": events}))
    assert r.status_code == 200, r.text


def test_each_rule_is_applied_before_the_lake(tmp_path):
    settings = config.parse({"tenants": [SHOP, OFF], "spool": {"min_free_disk_bytes": 0},
                             "privacy": {"id_salt": "a-salt-of-sixteen-chars"}}, tmp_path, environ={})
    page = {"level": "mid", "name": "page_view", "anonymous_id": "a1", "url": URL, "title": TITLE,
            "referrer": "https://mail.example/?to=dee@mail.example", "props": PROPS,
            "context": {"ip_hint": "1.2.3.4", "locale": "fr"}}
    bad = {"level": "mid", "name": "add_to_cart", "anonymous_id": "a1", "props": {"email": "eve@mail.example"},
           "url": "https://shop.example/?email=eve@mail.example"}
    with TestClient(create_app(settings)) as client:
        _post(client, SHOP["write_key"], [page, bad])
        _post(client, OFF["write_key"], [page])
        metrics = client.get("/metrics").text
    d = build_deliverer(settings)
    d.run_once()
    d.close()
    raw = {r["tenant"]: r for r in read_lake(settings.data_path)}
    shop = raw["shop"]
    assert shop["url"] == "https://shop.example/reset?page=2&uid=h_" + shop["url"].split("uid=h_")[1]
    assert len(shop["url"].split("uid=h_")[1]) == 16
    assert shop["referrer"] == "https://mail.example/?to=[email]"
    assert shop["title"] == "Order for [email], card [card], call [phone]"
    props = msgspec.json.decode(shop["props"])
    assert props["search"] == "[email]" and props["note"] == "[card]" and "password" not in props
    assert props["customer"].startswith("h_") and props["customer"] != "C-9"
    assert msgspec.json.decode(shop["context"]) == {"locale": "fr"}
    # the tenant with scrubbing off keeps what it was sent
    assert raw["off"]["url"] == URL and raw["off"]["title"] == TITLE
    # the rejected event's excerpt is scrubbed too
    [rejected] = [r for r in read_lake(settings.data_path, "rejected") if r["tenant"] == "shop"]
    assert "eve@mail.example" not in rejected["excerpt"] and "[email]" in rejected["excerpt"]
    for rule in ("email", "card", "phone", "query_param", "query_param_hash", "prop_drop", "prop_hash", "context_drop"):
        assert f'beaconlake_pii_scrubbed_total{{rule="{rule}"}}' in metrics, rule
