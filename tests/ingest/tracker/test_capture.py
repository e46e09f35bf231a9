"""What the tracker captures: low- and mid-level events, as they arrive in the raw lake."""

from __future__ import annotations

import re
import time
from itertools import pairwise

from tracker_support import Tab, lake_events, names, wait_for_events

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_a_visit_sends_low_and_mid_events_with_their_fields(tab, site, collector):
    site.use(collector, flush_ms=200)
    started = int(time.time() * 1000)
    url = site.url("index.html?q=red+shoes")
    tab.goto(url)
    tab.wait_loaded()
    aid = tab.ids()["anonymous_id"]

    tab.mouse.move(100, 100)
    tab.mouse.move(300, 200, steps=5)
    tab.click("[data-test=buy]")
    tab.mouse.click(600, 40, click_count=3)  # a rage click: three clicks on one spot within a second
    tab.touchscreen.tap(700, 60)
    tab.mouse.wheel(0, 1200)
    tab.wait_for_function("() => scrollY > 1000")
    tab.wait_for_timeout(300)
    tab.click("#submit")
    tab.evaluate("() => beaconlake.identify('user-42', {plan: 'pro'})")
    tab.evaluate("() => beaconlake.track('Signup Completed', {plan: 'pro', seats: 3})")
    tab.click("#internal")  # to next.html: the first page leaves, the next one is viewed
    tab.wait_for_url("**/next.html")
    tab.wait_loaded()

    wanted = {"pointer_move", "click", "rage_click", "touch", "scroll", "visibility", "page_view", "search",
              "form_submit", "identify", "signup_completed", "queued_before_load", "link_click", "page_leave"}
    rows = wait_for_events(
        collector, lambda rs: wanted <= set(names(rs)) and names(rs).count("page_view") == 2, anonymous_id=aid)
    assert not tab.errors
    first = [r for r in rows if r["url"] == url]
    second = [r for r in rows if r["url"].endswith("/next.html")]
    assert first and second and len(first) + len(second) == len(rows)

    # fields every event has
    assert len({r["event_id"] for r in rows}) == len(rows)
    for r in rows:
        assert UUID.match(r["event_id"]), r["event_id"]
        assert r["tenant"] == "demo"
        assert r["level"] in ("low", "mid")
        assert started - 1000 <= r["client_ts"] <= int(time.time() * 1000)
        assert abs(r["event_ts"] - r["client_ts"]) < 5000  # same clock here: little skew to correct
        ctx = r["context"]
        assert ctx["library"] == {"name": "beaconlake.js", "version": "0.1.0"}
        assert ctx["locale"] and ctx["tz"] and re.match(r"^\d+x\d+$", ctx["screen"])
        assert ctx["viewport"] == "1000x700"
        assert ctx["session_index"] == 1
    assert len({r["session_id"] for r in rows}) == 1
    assert {r["title"] for r in first} == {"Fixture shop"}
    assert {r["referrer"] for r in first} == {""}
    assert {r["referrer"] for r in second} == {url}
    # one page view id a page, and events numbered in order within it
    for page in (first, second):
        assert len({r["context"]["page_view_id"] for r in page}) == 1
        index = sorted(r["context"]["event_index"] for r in page)
        assert index == list(range(len(page)))
    assert first[0]["context"]["page_view_id"] != second[0]["context"]["page_view_id"]

    by_name = {}
    for r in first:
        by_name.setdefault(r["name"], []).append(r)
    levels = {r["name"]: r["level"] for r in rows}
    assert {n for n, lv in levels.items() if lv == "low"} == {
        "pointer_move", "click", "rage_click", "touch", "scroll", "visibility"}

    # low level
    move = by_name["pointer_move"][0]["props"]
    assert move == {"x": 100, "y": 100, "page_x": 100, "page_y": 100, "pointer": "mouse"}  # not scrolled yet
    times = [m["client_ts"] for m in by_name["pointer_move"]]
    assert all(b - a >= 100 for a, b in pairwise(times))  # sampled: one per pointer_interval_ms
    buy = by_name["click"][0]["props"]
    assert buy["target"] == "div#hero>button.btn.primary"
    assert buy["text"] == "Buy now"
    assert buy["pointer"] == "mouse"
    rage = by_name["rage_click"]
    assert len(rage) == 1 and rage[0]["props"]["count"] == 3 and (rage[0]["props"]["x"], rage[0]["props"]["y"]) == (600, 40)
    phases = [t["props"]["phase"] for t in by_name["touch"]]
    assert phases[0] == "start" and "end" in phases
    assert by_name["touch"][0]["props"]["x"] == 700
    scroll = max((s["props"] for s in by_name["scroll"]), key=lambda p: p["y"])  # later clicks scroll back up
    assert scroll["y"] > 1000 and 50 < scroll["depth_pct"] <= 100
    assert [v["props"] for v in by_name["visibility"]] == [{"state": "hidden"}]  # on the way out

    # mid level
    view = by_name["page_view"][0]
    assert view["level"] == "mid" and view["props"] == {"navigation": "load"}
    assert by_name["search"][0]["props"] == {"query": "red shoes", "param": "q"}
    queued = by_name["queued_before_load"][0]
    assert queued["level"] == "mid" and queued["props"] == {"from": "snippet"}
    form = by_name["form_submit"][0]["props"]
    assert form == {"form": "signup", "fields": 6, "action": "/signup", "method": "post"}  # no values by default
    ident = by_name["identify"][0]
    assert ident["user_id"] == "user-42" and ident["props"] == {"traits": {"plan": "pro"}}
    custom = by_name["signup_completed"][0]
    assert custom["level"] == "mid" and custom["props"] == {"plan": "pro", "seats": 3}
    # the user id sticks to every later event, on this page and the next
    later = [r for r in rows if r["client_ts"] >= ident["client_ts"] and r["name"] != "identify"]
    assert later and all(r["user_id"] == "user-42" for r in later)
    assert all(r["user_id"] is None for r in rows if r["client_ts"] < ident["client_ts"])
    link = by_name["link_click"][0]["props"]
    assert link["href"] == site.url("next.html") and link["outbound"] is False and link["text"] == "Next page"
    leave = by_name["page_leave"][0]["props"]
    assert leave["engaged_ms"] > 0 and leave["max_scroll_pct"] >= scroll["depth_pct"] and leave["low_dropped"] == 0
    assert [r["name"] for r in second if r["name"] == "page_view"] == ["page_view"]
    assert "hunter2" not in str(rows) and "4111111111111111" not in str(rows)  # the whole number: ids may hold 4111


def test_single_page_app_navigation_gives_page_views(tab, site, collector):
    site.use(collector, flush_ms=200)
    tab.goto(site.url("spa.html"))
    tab.wait_loaded()
    aid = tab.ids()["anonymous_id"]
    tab.click("#to-products")  # pushState
    tab.click("#filter")  # replaceState to a new URL: a new page
    tab.click("#same")  # replaceState of the state only: not a new page
    tab.click("#to-about")  # pushState
    tab.go_back()  # popstate, back to /spa/products?color=red
    tab.wait_for_url("**/spa/products?color=red")

    rows = wait_for_events(collector, lambda rs: names(rs).count("page_view") == 5, anonymous_id=aid)
    tab.wait_for_timeout(500)  # nothing more should come
    rows = lake_events(collector, aid)
    views = [r for r in rows if r["name"] == "page_view"]
    leaves = [r for r in rows if r["name"] == "page_leave"]
    origin = site.origin
    assert [(v["props"]["navigation"], v["url"]) for v in views] == [
        ("load", f"{origin}/spa.html"),
        ("push", f"{origin}/spa/products"),
        ("replace", f"{origin}/spa/products?color=red"),
        ("push", f"{origin}/spa/about"),
        ("pop", f"{origin}/spa/products?color=red"),
    ]
    # each view's referrer is the page before it, and each has its own page view id
    assert [v["referrer"] for v in views[1:]] == [v["url"] for v in views[:-1]]
    assert len({v["context"]["page_view_id"] for v in views}) == 5
    # the titles the router set right after pushState: the page view waits for it
    assert [v["title"] for v in views[:4]] == ["SPA home", "Products", "Products", "About"]
    # every view but the current one was left, once, with its engaged time and scroll depth; by
    # page view id, not by position: two leaves in one millisecond sort by their own views' event
    # counters, which say nothing of the order between views
    left = {leave["context"]["page_view_id"]: leave for leave in leaves}
    assert len(leaves) == len(left) == 4
    assert set(left) == {v["context"]["page_view_id"] for v in views[:4]}
    for view in views[:4]:
        leave = left[view["context"]["page_view_id"]]
        assert leave["client_ts"] >= view["client_ts"]
        assert leave["props"]["engaged_ms"] >= 0 and 0 < leave["props"]["max_scroll_pct"] <= 100
    assert not tab.errors


def test_form_values_only_when_the_tenant_enables_them_and_never_secrets(context, site, own_collector):
    # the tenant wants the e-mail field's value: it opts out of the collector's default e-mail
    # redaction too ([tenants.pii], docs/privacy.md), which would otherwise store "[email]"
    c = own_collector(tenant={"tracker": {"capture_form_values": True}, "pii": {"redact_emails": False}})
    site.use(c, flush_ms=200)
    tab = Tab(context.new_page(), c.url)
    tab.goto(site.url("index.html"))
    tab.wait_loaded()
    tab.wait_configured()
    tab.click("#submit")
    aid = tab.ids()["anonymous_id"]
    rows = wait_for_events(c, lambda rs: "form_submit" in names(rs), anonymous_id=aid)
    form = next(r for r in rows if r["name"] == "form_submit")["props"]
    # the password, the hidden token, the card number and the unticked box are left out
    assert form["values"] == {"email": "ada@example.org", "news": "yes"}
    assert "hunter2" not in str(rows) and "tok-123" not in str(rows) and "4111111111111111" not in str(rows)

    # the script tag can narrow what the tenant allows: no values with data-form-values="false"
    site.use(c, flush_ms=200, form_values="false")
    tab.goto(site.url("index.html"))
    tab.wait_loaded()
    tab.click("#submit")  # the settings kept from the first page apply at once
    rows = wait_for_events(c, lambda rs: names(rs).count("form_submit") == 2, anonymous_id=aid)
    assert "values" not in [r for r in rows if r["name"] == "form_submit"][-1]["props"]


def test_low_level_volume_is_bounded_by_configuration(tab, site, collector):
    site.use(collector, flush_ms=200, max_low=5)  # narrows the tenant's 1000 a page
    tab.goto(site.url("index.html"))
    tab.wait_loaded()
    aid = tab.ids()["anonymous_id"]
    for i in range(20):
        tab.mouse.click(500 + i, 600)
    tab.click("#leave")
    tab.wait_for_url("**/plain.html")
    rows = wait_for_events(collector, lambda rs: "page_leave" in names(rs), anonymous_id=aid)
    low = [r for r in rows if r["level"] == "low"]
    assert len(low) == 5
    leave = next(r for r in rows if r["name"] == "page_leave")
    assert leave["props"]["low_dropped"] >= 15  # counted, so the analyst knows
    assert names(rows, "mid").count("page_view") == 1
