"""The raw lake as the real collector writes it converts: events in, sessions out, duplicates once."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from support import read_lake, start_collector

from beaconlake import cli
from beaconlake.convert.cli import load
from beaconlake.convert.query import run_query
from beaconlake.convert.run import open_store

pytestmark = pytest.mark.slow


def test_events_sent_to_the_collector_come_out_as_sessions(tmp_path, capsys):
    collector = start_collector(tmp_path)
    now = int(time.time() * 1000)
    ids = [str(uuid.uuid4()) for _ in range(5)]

    def ev(i, name, level="mid", **extra):
        return {"event_id": ids[i], "level": level, "name": name, "anonymous_id": "visitor-1",
                "client_ts": now - 60_000 + i * 1000, "url": "https://shop.example/p/1", **extra}

    batch = {"sent_at": now, "events": [
        ev(0, "page_view", context={"page_view_id": "pv-1", "locale": "fr-FR"}),
        ev(1, "product_view", props={"category": "tents"}, context={"page_view_id": "pv-1"}),
        ev(2, "product_view", props={"category": "tents"}, context={"page_view_id": "pv-1"}),
        ev(3, "add_to_cart", props={"sku": "T-1", "price": 99.5}, context={"page_view_id": "pv-1"}),
        ev(4, "click", "low", context={"page_view_id": "pv-1"}),
    ]}
    url = f"{collector.url}/v1/events?k={collector.write_key}"
    try:
        assert httpx.post(url, json=batch).json()["accepted"] == 5
        assert httpx.post(url, json=batch).json()["accepted"] == 5  # a retry after a lost answer
    finally:
        collector.stop()
    raw = read_lake(collector.data_dir)
    assert len(raw) >= 10

    cfg = str(collector.config_path)
    assert cli.main(["convert", "--config", cfg, "--no-progress"]) == 0
    capsys.readouterr()
    settings, sections = load(cfg)
    store = open_store(settings, sections)
    events = run_query(store, "SELECT * FROM events", settings.data_dir).to_pylist()
    assert len(events) == len({r["event_id"] for r in raw})  # each event once
    assert {e["event_id"] for e in events} >= set(ids)
    [session] = run_query(store, "SELECT * FROM sessions", settings.data_dir).to_pylist()
    assert session["events"] == len(events) and session["page_views"] == 1 and session["locale"] == "fr-FR"
    [cart] = [e for e in events if e["name"] == "add_to_cart"]
    assert (cart["prop_sku"], cart["prop_price"]) == ("T-1", 99.5)  # the starter config's schema
    highs = run_query(store, "SELECT * FROM high_level_events", settings.data_dir).to_pylist()
    assert len(highs) == len({r["event_id"] for r in raw if r["level"] == "high"})
