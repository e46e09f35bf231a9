"""High-level events: the tenant's sequences (conftest.SEQUENCES), detected in the browser."""

from __future__ import annotations

from tracker_support import lake_events, names, wait_for_events


def test_a_sequence_across_pages_gives_one_high_level_event(tab, site, collector):
    site.use(collector, flush_ms=100)
    tab.goto(site.url("index.html"))
    tab.wait_loaded()
    aid = tab.ids()["anonymous_id"]
    tab.wait_configured()  # the sequence definitions are in
    tab.click("#shoe-a")  # step 1: a product view with a category
    tab.click("#hat")  # another category: not step 2
    tab.click("#internal")  # the partial match survives the page change
    tab.wait_for_url("**/next.html")
    tab.wait_loaded()
    tab.click("#shoe-b")  # step 2: same category as step 1
    tab.click("#add")  # step 3: add_to_cart with price >= 10
    tab.click("#add")  # the events of a match are used once: no second match
    rows = wait_for_events(collector, lambda rs: "considered_then_added" in names(rs), anonymous_id=aid)
    tab.wait_for_timeout(800)  # let a wrong second match come, if it would
    rows = lake_events(collector, aid)

    high = [r for r in rows if r["level"] == "high"]
    matches = [r for r in high if r["name"] == "considered_then_added"]
    assert len(matches) == 1
    m = matches[0]
    views = [r for r in rows if r["name"] == "product_view"]
    adds = [r for r in rows if r["name"] == "add_to_cart"]
    shoe_a = next(v for v in views if v["props"]["sku"] == "A")
    shoe_b = next(v for v in views if v["props"]["sku"] == "B")
    assert m["props"] == {
        "definition": "considered_then_added",
        "matched_event_ids": [shoe_a["event_id"], shoe_b["event_id"], adds[0]["event_id"]],
        "source": "browser",
    }
    assert m["url"] == site.url("next.html") and m["anonymous_id"] == aid
    assert m["session_id"] == adds[0]["session_id"]
    assert m["client_ts"] >= adds[0]["client_ts"]


def test_no_high_level_event_when_a_predicate_fails(tab, site, collector):
    site.use(collector, flush_ms=100)
    tab.goto(site.url("index.html"))
    tab.wait_loaded()
    aid = tab.ids()["anonymous_id"]
    wait_for_events(collector, lambda rs: "page_view" in names(rs), anonymous_id=aid)
    tab.click("#shoe-a")
    tab.click("#hat")  # `same: props.category` fails
    tab.evaluate("() => beaconlake.track('add_to_cart', {sku: 'H', price: 42})")
    tab.click("#shoe-b")
    tab.evaluate("() => beaconlake.track('add_to_cart', {sku: 'B', price: 5})")  # `gte 10` fails
    tab.click("#checkout")
    rows = wait_for_events(collector, lambda rs: "checkout" in names(rs), anonymous_id=aid)
    tab.wait_for_timeout(800)
    assert "considered_then_added" not in names(lake_events(collector, aid))
    assert names(rows).count("add_to_cart") == 2


def test_not_followed_by_waits_and_is_cancelled_in_time(tab, site, collector):
    site.use(collector, flush_ms=100)
    tab.goto(site.url("next.html"))
    tab.wait_loaded()
    aid = tab.ids()["anonymous_id"]
    wait_for_events(collector, lambda rs: "page_view" in names(rs), anonymous_id=aid)
    # added, then checked out within the second: no abandoned cart
    tab.evaluate("() => { document.getElementById('add').click(); beaconlake.track('checkout', {}); }")
    # added, and nothing: abandoned_cart once its second is up
    tab.wait_for_timeout(300)
    tab.click("#add")
    rows = wait_for_events(collector, lambda rs: "abandoned_cart" in names(rs), anonymous_id=aid)
    tab.wait_for_timeout(800)  # the first one's time is long up: it must not come now
    rows = lake_events(collector, aid)
    adds = [r for r in rows if r["name"] == "add_to_cart"]
    abandoned = [r for r in rows if r["name"] == "abandoned_cart"]
    assert len(adds) == 2 and len(abandoned) == 1
    assert abandoned[0]["props"]["matched_event_ids"] == [adds[1]["event_id"]]
    assert abandoned[0]["client_ts"] - adds[1]["client_ts"] >= 1000
    assert abandoned[0]["level"] == "high"
