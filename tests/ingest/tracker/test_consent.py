"""Consent: opting out sends nothing, Do Not Track is honoured, anonymous mode keeps no id."""

from __future__ import annotations

import time

from tracker_support import Tab, lake_events, names, wait_for_events

DNT_ON = "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})"


def interact(tab: Tab) -> None:
    tab.mouse.move(100, 100)
    tab.mouse.move(300, 300, steps=3)
    tab.click("[data-test=buy]")
    tab.evaluate("() => beaconlake.track('should_not_be_sent', {})")
    tab.evaluate("() => beaconlake.identify('user-1')")


def test_opt_out_sends_nothing_until_opt_in(tab, site, collector):
    site.use(collector, flush_ms=100)
    tab.goto(site.url("index.html"))
    tab.wait_loaded()
    old_aid = tab.ids()["anonymous_id"]
    wait_for_events(collector, lambda rs: "page_view" in names(rs), anonymous_id=old_aid)
    # in one task, so the event is still waiting to be sent when the person opts out
    tab.evaluate("() => { beaconlake.track('just_before_opting_out', {}); beaconlake.optOut(); }")
    opted_out_at = time.monotonic()
    interact(tab)
    before_next_page = len(tab.requests)
    tab.click("#internal")  # the choice holds on the next page
    tab.wait_for_url("**/next.html")
    tab.wait_loaded()
    interact_next = "() => { beaconlake.track('should_not_be_sent', {}); beaconlake.page(); }"
    tab.evaluate(interact_next)
    tab.wait_for_timeout(800)

    assert not [t for t, _ in tab.posts if t > opted_out_at]
    # on the next page not even the config is asked for
    assert [u for u in tab.requests[before_next_page:] if "/v1/" in u] == []
    assert tab.evaluate("() => Object.keys(localStorage).filter(k => /^bl_(id|u|s|o_)/.test(k))") == []
    rows = lake_events(collector, old_aid)
    assert "just_before_opting_out" not in names(rows) and "should_not_be_sent" not in names(rows)

    # opting in again: a new anonymous id, and a page view of the page we are on
    tab.evaluate("() => beaconlake.optIn()")
    new_aid = tab.ids()["anonymous_id"]
    assert new_aid and new_aid != old_aid
    rows = wait_for_events(collector, lambda rs: "page_view" in names(rs), anonymous_id=new_aid)
    assert rows[0]["url"] == site.url("next.html") and rows[0]["user_id"] is None
    assert not tab.errors


def test_do_not_track_is_respected_unless_the_tenant_says_otherwise(context, site, collector, own_collector):
    context.add_init_script(DNT_ON)
    site.use(collector, flush_ms=100)
    tab = Tab(context.new_page(), collector.url)
    tab.goto(site.url("index.html"))
    tab.wait_loaded()
    interact(tab)
    tab.wait_for_timeout(800)
    assert tab.posts == []
    assert any("/v1/config" in u for u in tab.requests)  # asked, carrying no id
    assert tab.ids()["user_id"] is None  # identify was ignored too

    # a tenant that does not respect Do Not Track: nothing until its settings say so, then events,
    # under the id the page could read before (the answer is held back until it has read it)
    c = own_collector(tenant={"tracker": {"respect_do_not_track": False}})
    site.use(c, flush_ms=100)
    tab = Tab(context.new_page(), c.url)
    held = []
    tab.route(f"{c.url}/v1/config*", lambda route: held.append(route))
    tab.goto(site.url("index.html"))
    tab.wait_loaded()
    aid = tab.ids()["anonymous_id"]
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        tab.wait_for_timeout(50)
    held[0].continue_()
    rows = wait_for_events(c, lambda rs: "page_view" in names(rs), anonymous_id=aid, tab=tab)
    assert tab.ids()["anonymous_id"] == aid and rows[0]["props"] == {"navigation": "load"}

    # ... which the script tag can still narrow back
    site.use(c, flush_ms=100, respect_dnt="true")
    tab = Tab(context.new_page(), c.url)
    tab.goto(site.url("next.html"))
    tab.wait_loaded()
    tab.click("#add")
    tab.wait_for_timeout(800)
    assert tab.posts == []
    assert names(lake_events(c, aid)) == ["page_view"]


def test_anonymous_mode_sends_events_without_a_persistent_id(context, site, collector):
    site.use(collector, flush_ms=100, anonymous="true")
    tab = Tab(context.new_page(), collector.url)
    tab.goto(site.url("index.html"))
    tab.wait_loaded()
    first = tab.ids()["anonymous_id"]
    tab.evaluate("() => beaconlake.identify('user-1')")  # no user id in anonymous mode
    tab.click("#internal")
    tab.wait_for_url("**/next.html")
    tab.wait_loaded()
    second = tab.ids()["anonymous_id"]
    assert first != second  # every page load is a new anonymous visitor
    rows = wait_for_events(collector, lambda rs: "page_view" in names(rs), anonymous_id=second)
    rows += wait_for_events(collector, lambda rs: "page_leave" in names(rs), anonymous_id=first)
    assert all(r["context"]["anonymous"] is True and r["user_id"] is None for r in rows)
    assert "identify" not in names(rows)
    stored = tab.evaluate("() => [Object.keys(localStorage).filter(k => /^bl_(id|u|s|q_)/.test(k)), document.cookie]")
    assert stored == [[], ""]

    # consent given: a persistent id from now on
    tab.evaluate("() => beaconlake.optIn()")
    third = tab.ids()["anonymous_id"]
    tab.goto(site.url("index.html"))
    tab.wait_loaded()
    assert tab.ids()["anonymous_id"] == third != second
    rows = wait_for_events(collector, lambda rs: "page_view" in names(rs), anonymous_id=third)
    assert "anonymous" not in rows[0]["context"]
