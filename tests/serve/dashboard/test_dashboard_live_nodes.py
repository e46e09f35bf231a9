"""Live and the read API on a node that did not receive the events: two real ``beaconlake up``
nodes, each with its own data folder, sharing only a bucket (moto's S3 server), Redis (the
counters) and PostgreSQL (the high-level index). Events posted to one node show on the other's
Live view (the lake, read through the storage seam) and its ``/v1/stats`` and ``/v1/high-level``."""

from __future__ import annotations

import time

import boto3
import httpx
from dashboard_support import BROWSER_UA, MIN
from realtime.servers import fresh_postgres_db, fresh_redis_db
from support import moto_s3, start_collector

from beaconlake.units import now_ms

KEYS = {"write_key": "wk_nodesnodesnodesnodes", "read_key": "rk_nodesnodesnodesnodes"}
SEQUENCE = {"name": "looked_then_added", "within_secs": 600, "steps": [{"name": "product_view"}, {"name": "add_to_cart"}]}


def _events(now: int) -> list[dict]:
    def ev(anon, ago, name, path):
        props = {"sku": path[-1], "price": 10.0} if name in ("add_to_cart", "product_view") else {}
        return {"level": "mid", "name": name, "anonymous_id": anon, "client_ts": now - ago, "url": f"https://shop.example{path}",
                "props": props}

    return [ev("n-a", 3 * MIN, "page_view", "/p/1"), ev("n-a", 3 * MIN - 100, "product_view", "/p/1"),
            ev("n-a", 2 * MIN, "add_to_cart", "/p/1"), ev("n-b", 2 * MIN, "page_view", "/p/1"),
            ev("n-c", MIN, "page_view", "/cart"), ev("n-c", MIN - 100, "product_view", "/p/2"),
            ev("n-c", MIN - 200, "add_to_cart", "/p/2")]


def _get(node, path, **params):
    r = httpx.get(node.url + path, params=params, headers={"authorization": f"Bearer {KEYS['read_key']}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_node_that_did_not_ingest_shows_the_events(tmp_path):
    redis_url, prefix = fresh_redis_db()
    with moto_s3() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k",
                     aws_secret_access_key="s").create_bucket(Bucket="lake")
        shared = {
            "storage": {"type": "s3", "bucket": "lake", "prefix": "nodes", "endpoint_url": endpoint,
                        "access_key_id": "k", "secret_access_key": "s"},
            "counters": {"type": "redis", "url": redis_url, "key_prefix": prefix},
            "highlevel": {"type": "postgres", "dsn": fresh_postgres_db()},
            "schedule": {"enabled": False},
            "tenant": {**KEYS, "sequences": [SEQUENCE]},
        }
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = start_collector(tmp_path / "a", config_overrides=shared)
        try:
            b = start_collector(tmp_path / "b", config_overrides=shared)
            try:
                now = now_ms()
                r = httpx.post(f"{a.url}/v1/events?k={KEYS['write_key']}", json={"sent_at": now, "events": _events(now)},
                               headers={"user-agent": BROWSER_UA})
                assert r.status_code == 200 and r.json()["rejected"] == [], r.text
                a.wait_delivered()
                deadline = time.monotonic() + 20
                while True:  # the high-level index and the lake are written just after the spool drains
                    live = _get(b, "/v1/dashboard/live")
                    if sum(m["events"] for m in live["minutes"]) == 9 and live["high_level"] or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                by_level: dict[str, int] = {}
                for m in live["minutes"]:
                    by_level[m["level"]] = by_level.get(m["level"], 0) + m["events"]
                assert by_level == {"mid": 7, "high": 2}  # the detector's matches are in the lake too
                assert live["people_last_hour"] == 3 and live["active_people"] == 3
                assert live["pages"][0] == {"key": "/p/1", "views": 2, "people": 2}
                assert {r["key"]: r["events"] for r in live["names"]} == {"page_view": 3, "product_view": 2, "add_to_cart": 2,
                                                                   "looked_then_added": 2}
                assert live["high_level"] == {"looked_then_added": 2} == live["high_level_24h"]
                on_a = _get(a, "/v1/dashboard/live")
                shown = ("minutes", "pages", "names", "high_level", "people_last_hour", "active_people", "rejected")
                assert {k: on_a[k] for k in shown} == {k: live[k] for k in shown}
                # node b never held a lake file: what it showed came from the bucket
                assert not (b.data_dir / "lake").exists() or not any((b.data_dir / "lake").rglob("*.parquet"))
                # the read API of node b: counters from Redis, high-level events from PostgreSQL
                stats = {n: _get(b, "/v1/stats", name=n, by="minute", **{"from": now - 10 * MIN, "to": now + MIN})
                         for n in ("page_view", "add_to_cart")}
                # (the page view of three minutes ago closed its window before it came: a late event)
                assert sum(row["count"] for row in stats["page_view"]["rows"]) == 2
                assert sum(row["count"] for row in stats["add_to_cart"]["rows"]) == 2
                assert stats["page_view"]["rows"] == _get(a, "/v1/stats", name="page_view", by="minute",
                                                          **{"from": now - 10 * MIN, "to": now + MIN})["rows"]
                assert _get(b, "/v1/high-level")["counts"] == {"looked_then_added": 2} == _get(a, "/v1/high-level")["counts"]
            finally:
                b.stop()
        finally:
            a.stop()
