"""Retention with a clock the test moves: each tenant's data goes when its days are over, whole
days at a time, and another tenant's data stays."""

from __future__ import annotations

import time

import msgspec
import pytest
from pyiceberg.expressions import EqualTo
from starlette.testclient import TestClient
from support import read_lake

from beaconlake import config
from beaconlake.backends.profiles import open_profiles
from beaconlake.backends.storage import open_storage
from beaconlake.convert.run import open_store
from beaconlake.errors import ConfigError
from beaconlake.lake import layout
from beaconlake.privacy.retention import enforce
from beaconlake.schedule.run import run_once
from beaconlake.serve.app import create_app
from beaconlake.units import DAY_MS
from beaconlake.up import build_deliverer

KEEPS = {"raw_days": 10, "tables_days": 20, "rejected_days": 10, "profiles_inactive_days": 30, "snapshots_days": 1}
SHOP = {"id": "shop", "write_key": "wk_shopshopshopshopshop", "read_key": "rk_shopshopshopshopshop", "retention": KEEPS,
        "schemas": [{"level": "mid", "name": "add_to_cart", "schema": {"type": "object", "required": ["sku"]}}]}
KEEP = {"id": "keep", "write_key": "wk_keepkeepkeepkeepkeep", "read_key": "rk_keepkeepkeepkeepkeep"}


def _rows(store, table: str, tenant: str) -> int:
    return store.table(table).scan(row_filter=EqualTo("tenant", tenant)).to_arrow().num_rows


def test_each_kind_goes_when_its_days_are_over(tmp_path):
    settings = config.parse({"tenants": [SHOP, KEEP], "spool": {"min_free_disk_bytes": 0},
                             "schedule": {"enabled": False}}, tmp_path, environ={})
    now = int(time.time() * 1000)
    with TestClient(create_app(settings)) as client:
        for t in (SHOP, KEEP):
            events = [{"level": "mid", "name": "page_view", "anonymous_id": f"{t['id']}-{i}", "client_ts": now - 60_000}
                      for i in range(3)] + [{"level": "mid", "name": "add_to_cart", "anonymous_id": "x", "props": {}}]
            r = client.post(f"/v1/events?k={t['write_key']}", headers={"content-type": "application/json"},
                            content=msgspec.json.encode({"sent_at": now, "events": events}))
            assert r.status_code == 200
    d = build_deliverer(settings)
    d.run_once()
    d.close()
    assert run_once(settings, "interval")["status"] == "ok"
    storage = open_storage(settings.storage)

    def counts():
        store, profiles = open_store(settings), open_profiles(settings.profiles)
        try:
            return {t: (len(storage.list(layout.raw_prefix(t))), len(storage.list(layout.rejected_prefix(t))),
                        _rows(store, "events", t), profiles.count(t)) for t in ("shop", "keep")}
        finally:
            profiles.close()

    start = counts()
    assert all(start["shop"]) and start["keep"][0] and start["keep"][2], start
    gone = enforce(settings, now + 5 * DAY_MS)
    assert gone["shop"].pop("snapshots_expired") > 0  # snapshots_days = 1: every older snapshot goes
    assert gone == {"shop": {"raw_files": 0, "rejected_files": 0, "table_rows": 0, "profiles": 0}}
    assert counts() == start
    gone = enforce(settings, now + 12 * DAY_MS)["shop"]
    assert gone["raw_files"] == start["shop"][0] and gone["rejected_files"] == start["shop"][1]
    assert gone["table_rows"] == 0
    assert counts() == {"shop": (0, 0, 3, start["shop"][3]), "keep": start["keep"]}
    gone = enforce(settings, now + 31 * DAY_MS)["shop"]
    # 3 events, their 3 sessions and 3 page views
    assert gone["table_rows"] == 9 and gone["profiles"] == start["shop"][3]
    assert counts() == {"shop": (0, 0, 0, 0), "keep": start["keep"]}
    assert {r["tenant"] for r in read_lake(settings.data_path)} == {"keep"}
    kinds = [layout.parse_audit(k).what for k in storage.list(layout.audit_prefix("shop"))]
    assert kinds == ["retention"] * 4  # the scheduled run enforced it too (nothing due then)


@pytest.mark.parametrize("value", [0, -1, 40_000])
def test_retention_days_out_of_range_is_a_config_error(tmp_path, value):
    with pytest.raises(ConfigError, match=f"retention.raw_days = {value}: must be between 1 and 36500"):
        config.parse({"tenants": [{**KEEP, "retention": {"raw_days": value}}]}, tmp_path, environ={})
