"""A broken environment or a careless site must not turn the tracker into the site's problem."""

from __future__ import annotations

from tracker_support import Tab, names, wait_for_events


def test_no_storage_no_cookies_no_fetch_no_beacon_still_no_error_and_events_arrive(context, site, collector):
    site.use(collector, flush_ms=100)
    tab = Tab(context.new_page(), collector.url)
    tab.goto(site.url("hostile.html"))
    tab.wait_loaded()
    assert tab.evaluate("() => [window.siteScriptRan, typeof window.fetch, typeof navigator.sendBeacon]") == [
        True, "undefined", "undefined"]
    tab.click("#buy")
    tab.click("#bad")  # a cyclic props object, no event name, identify(), an unknown call
    assert tab.evaluate("() => [window.afterTrack, window.afterBad]") == [True, True]
    aid = tab.ids()["anonymous_id"]
    # sent with XMLHttpRequest, the id kept in memory only
    rows = wait_for_events(
        collector, lambda rs: {"page_view", "queued_on_hostile_page", "hostile_click"} <= set(names(rs)), anonymous_id=aid)
    assert next(r for r in rows if r["name"] == "queued_on_hostile_page")["props"] == {"ok": True}
    assert "cyclic" not in names(rows)
    assert tab.errors == []
    # the misuse is explained on the console, not thrown
    assert any("track(name, {props})" in w for w in tab.warnings)
    assert any("unknown call nope" in w for w in tab.warnings)


def test_the_page_own_history_errors_stay_the_page_own(tab, site, collector):
    site.use(collector, flush_ms=100)
    tab.goto(site.url("spa.html"))
    tab.wait_loaded()
    # pushState to another origin throws a SecurityError, tracker or not; nothing else changes
    thrown = tab.evaluate("""() => {
        try { history.pushState({}, '', 'http://elsewhere.example/x'); return 'no error'; }
        catch (e) { return e.name; }
    }""")
    assert thrown == "SecurityError"
    tab.click("#to-products")
    aid = tab.ids()["anonymous_id"]
    wait_for_events(collector, lambda rs: names(rs).count("page_view") == 2, anonymous_id=aid)
    assert tab.errors == []


def test_the_snippet_twice_loads_one_tracker(tab, site, collector):
    site.use(collector, flush_ms=100)
    tab.goto(site.url("index.html"))
    tab.wait_loaded()
    aid = tab.ids()["anonymous_id"]
    # a second copy of the script, as a site with a tag manager and a hard-coded snippet has
    tab.evaluate("""src => new Promise(done => {
        const s = document.createElement('script');
        s.src = src; s.dataset.key = 'other'; s.onload = done;
        document.head.appendChild(s);
    })""", f"{collector.url}/beaconlake.js")
    tab.evaluate("() => beaconlake.track('after_second_copy', {})")
    rows = wait_for_events(collector, lambda rs: "after_second_copy" in names(rs), anonymous_id=aid)
    assert names(rows).count("page_view") == 1
    assert tab.ids()["anonymous_id"] == aid
