"""Real SDKs nobody here wrote, from PyPI (segment-analytics-python, rudder-sdk-python,
snowplow-tracker), against a real ``beaconlake up``: rows in the lake, then in the convert
tables, then in the profiles."""

from __future__ import annotations

import uuid

import pytest
from support import read_lake, start_collector

from beaconlake import cli
from beaconlake.backends.profiles import open_profiles
from beaconlake.convert.cli import load
from beaconlake.convert.query import run_query
from beaconlake.convert.run import open_store

pytestmark = pytest.mark.slow
segment_analytics = pytest.importorskip("segment.analytics", reason="pip install -e '.[test]' (segment-analytics-python)")
rudder_analytics = pytest.importorskip("rudderstack.analytics", reason="pip install -e '.[test]' (rudder-sdk-python)")
snowplow_tracker = pytest.importorskip("snowplow_tracker", reason="pip install -e '.[test]' (snowplow-tracker)")

PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")


def test_segment_rudderstack_and_snowplow_sdks_end_to_end(tmp_path, capsys):
    collector = start_collector(tmp_path, config_overrides={"tenant": {"app_ids": ["shop-backend"]},
                                                            "schedule": {"enabled": False}})
    errors: list = []
    retried = str(uuid.uuid4())
    try:
        # Segment's Python library, batching in its own thread as in production
        seg = segment_analytics.Client(collector.write_key, host=collector.url, on_error=lambda e, b: errors.append(e),
                                       max_retries=1)
        seg.page(anonymous_id="anon-seg", name="Home", properties={"url": "https://shop.example/", "title": "Shop"})
        seg.track(anonymous_id="anon-seg", event="Product Viewed", properties={"sku": "T-1"})
        seg.screen(anonymous_id="anon-seg", name="Cart")
        seg.identify("user-seg", {"email": "p@example.com"}, anonymous_id="anon-seg")
        seg.group("user-seg", "acme", {"plan": "pro"})
        seg.alias("anon-earlier", "user-seg")
        seg.track("user-seg", "Order Completed", {"revenue": 42}, message_id=retried)
        seg.track("user-seg", "Order Completed", {"revenue": 42}, message_id=retried)  # a retry of the same message
        # a backend sending a person's event: its own agent is python-requests, the person's is a phone
        seg.track(anonymous_id="anon-phone", event="Checkout Started", context={"userAgent": PHONE_UA, "ip": "198.51.100.7"})
        seg.flush()
        seg.shutdown()
        assert errors == []

        bad = segment_analytics.Client("wk_nobody_nobody_nobody", host=collector.url, sync_mode=True)
        with pytest.raises(segment_analytics.client.APIError if hasattr(segment_analytics.client, "APIError")
                           else Exception) as refused:
            bad.track(anonymous_id="x", event="Nope")
        assert refused.value.status == 401 and refused.value.code == "unknown_key"

        # RudderStack's Python SDK gzips its batches by default
        rudder = rudder_analytics.Client(collector.write_key, host=collector.url, on_error=lambda e, b: errors.append(e))
        rudder.track(anonymous_id="anon-rudder", event="Signed Up", properties={"plan": "free"})
        rudder.identify("user-rudder", {"name": "R"}, anonymous_id="anon-rudder")
        rudder.flush()
        rudder.shutdown()
        assert errors == []

        # Snowplow's Python tracker, app id claimed in the tenant's config
        Emitter, Tracker, Subject = snowplow_tracker.Emitter, snowplow_tracker.Tracker, snowplow_tracker.Subject
        emitter = Emitter("127.0.0.1", protocol="http", port=collector.port, method="post", batch_size=10)
        subject = Subject().set_domain_user_id("duid-sp").set_user_id("user-sp").set_useragent(PHONE_UA)
        tracker = Tracker("sp", emitter, subject=subject, app_id="shop-backend")
        tracker.track(snowplow_tracker.PageView(page_url="https://shop.example/sp", page_title="SP"))
        tracker.track(snowplow_tracker.StructuredEvent("shop", "Add To Basket", label="T-1", value=3))
        tracker.track(snowplow_tracker.SelfDescribing(snowplow_tracker.SelfDescribingJson(
            "iglu:com.acme/refund/jsonschema/1-0-0", {"amount": 5})))
        emitter.flush()
        pixel = Emitter("127.0.0.1", protocol="http", port=collector.port, method="get")  # tp1: GET /i, a GIF back
        Tracker("sp-get", pixel, subject=Subject().set_domain_user_id("duid-get"), app_id="shop-backend").track(
            snowplow_tracker.PageView(page_url="https://shop.example/pixel", page_title="Pixel"))
        pixel.flush()
        failed: list = []
        stranger = Emitter("127.0.0.1", protocol="http", port=collector.port, method="get",
                           on_failure=lambda n, evs: failed.append(n))
        Tracker("sp2", stranger, app_id="not-claimed").track(snowplow_tracker.PageView(page_url="https://x.example/"))
        stranger.flush()
        assert failed == [0]  # refused: the tracker counts 0 sent
        collector.wait_delivered()
    finally:
        collector.stop()

    raw = read_lake(collector.data_dir)
    by_source: dict = {}
    for row in raw:
        by_source.setdefault(row["source"], []).append(row)
    assert {r["name"] for r in by_source["segment"]} >= {
        "page_view", "product_viewed", "screen_view", "identify", "group", "alias", "order_completed",
        "checkout_started", "signed_up"}
    assert {r["name"] for r in by_source["snowplow"]} == {"page_view", "add_to_basket", "refund"}
    assert [r["url"] for r in by_source["snowplow"] if r["anonymous_id"] == "duid-get"] == ["https://shop.example/pixel"]
    assert sum(r["event_id"] == retried for r in raw) == 2  # both arrived; convert keeps one
    [phone] = [r for r in raw if r["name"] == "checkout_started"]
    assert (phone["user_agent"], phone["is_bot"], phone["ip"]) == (PHONE_UA, False, "198.51.100.0")
    [sp_pv] = [r for r in by_source["snowplow"] if r["name"] == "page_view" and r["anonymous_id"] == "duid-sp"]
    assert (sp_pv["anonymous_id"], sp_pv["user_id"], sp_pv["is_bot"]) == ("duid-sp", "user-sp", False)
    rejected = read_lake(collector.data_dir, "rejected")
    assert [(r["tenant"], r["reason"]) for r in rejected] == [("_unknown", "unknown_app_id")]
    assert "not-claimed" in rejected[0]["error"]

    cfg = str(collector.config_path)
    assert cli.main(["convert", "--config", cfg, "--no-progress"]) == 0
    settings, sections = load(cfg)
    store = open_store(settings, sections)
    events = run_query(store, "SELECT event_id, name, source, stitched_user, anonymous_id, is_bot FROM events",
                       settings.data_dir).to_pylist()
    assert sum(e["event_id"] == retried for e in events) == 1
    assert {e["source"] for e in events} == {"segment", "snowplow"}
    # identify and alias stitch the anonymous history to the user
    stitched = {e["anonymous_id"]: e["stitched_user"] for e in events}
    assert stitched["anon-seg"] == "user-seg" and stitched["anon-earlier"] == "user-seg"
    assert stitched["anon-rudder"] == "user-rudder"
    [checkout] = [e for e in events if e["name"] == "checkout_started"]
    assert checkout["is_bot"] is False

    assert cli.main(["analyze", "--config", cfg]) == 0
    capsys.readouterr()
    profiles = open_profiles(settings.profiles)
    profile = profiles.get("demo", "user-seg")
    assert profile is not None and "anon-seg" in profile["anonymous_ids"]
    assert profiles.get("demo", "anon-seg")["person_id"] == profile["person_id"]  # one person, found by either id
    assert profiles.get("demo", "anon-phone") is not None  # a server-sent event of a real person: not dropped as a bot
