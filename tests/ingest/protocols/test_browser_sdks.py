"""Segment's (``@segment/analytics-next``) and Snowplow's (``@snowplow/browser-tracker``) browser
libraries, from npm (``npm ci`` in tests/ingest/protocols/browser, done by ``make test``), in
headless Chromium on a fixture page of their own origin, sending to a real ``beaconlake up``:
no CDN (settings inline, every other host blocked), rows in the lake, then in the tables and
profiles."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
from support import Collector, read_lake, start_collector

from beaconlake import cli
from beaconlake.backends.profiles import open_profiles
from beaconlake.convert.cli import load
from beaconlake.convert.query import run_query
from beaconlake.convert.run import open_store

pytestmark = [pytest.mark.slow, pytest.mark.browser]
FIXTURES = Path(__file__).parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu"]
DESKTOP_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    if not (FIXTURES / "node_modules").is_dir():
        pytest.skip(f"the npm fixtures are not installed: npm ci --prefix {FIXTURES} (make test does it)")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(FIXTURES)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
    yield b
    b.close()


def open_page(browser: Any, url: str, outside: list[str]) -> Any:
    """A page whose requests may reach 127.0.0.1 only; any other host is blocked and recorded."""
    ctx = browser.new_context(user_agent=DESKTOP_UA)
    page = ctx.new_page()

    def guard(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.goto(url)
    return page


def wait_for(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    return check()


def test_browser_libraries_end_to_end(tmp_path, browser, site, capsys):
    collector: Collector = start_collector(tmp_path, config_overrides={
        "tenant": {"app_ids": ["shop-web"]}, "schedule": {"enabled": False}})
    host = f"127.0.0.1:{collector.port}"
    outside: list[str] = []
    answers: list[tuple[str, int]] = []
    try:
        for prefix, batching in (("std", ""), ("bat", "&batching=1")):
            page = open_page(browser, f"{site}/segment.html?collector={host}&key={collector.write_key}{batching}", outside)
            page.on("response", lambda r: answers.append((urlsplit(r.url).path, r.status)) if "/v1/" in r.url else None)
            assert page.evaluate(f"window.run('{prefix}')") == "done"
            page.wait_for_timeout(1500)  # the batching strategy flushes on its timer
            assert page.evaluate("window.errors") == []
            page.context.close()
        bad = open_page(browser, f"{site}/segment.html?collector={host}&key=wk_unknown_unknown_unknown", outside)
        bad_answers: list[int] = []
        bad.on("response", lambda r: bad_answers.append(r.status) if "/v1/t" in r.url else None)
        bad.evaluate("window.analytics.track('Nope')")
        wait_for(lambda: bad_answers)
        assert bad_answers[0] == 401
        bad.context.close()

        sp = open_page(browser, f"{site}/snowplow.html?collector=http://{host}&app=shop-web", outside)
        assert sp.evaluate("window.run()") == "done"
        for y in range(6):  # activity, so that the activity tracker sends page pings
            sp.mouse.move(100 + y * 10, 100 + y * 10)
            sp.mouse.wheel(0, 300)
            sp.wait_for_timeout(400)
        stranger = open_page(browser, f"{site}/snowplow.html?collector=http://{host}&app=unclaimed&method=get", outside)
        stranger.evaluate("window.run()")
        stranger.wait_for_timeout(1000)
        collector.wait_delivered()
        rows = wait_for(lambda: len(read_lake(collector.data_dir)) >= 15 and read_lake(collector.data_dir))
    finally:
        collector.stop()
    assert outside == []  # nothing fetched from a CDN or anywhere else
    paths = {p for p, _ in answers}
    assert {"/v1/p", "/v1/t", "/v1/s", "/v1/i", "/v1/g", "/v1/a", "/v1/b"} <= paths, paths
    assert {s for _, s in answers} == {200}

    rows = read_lake(collector.data_dir)
    seg = [r for r in rows if r["source"] == "segment"]
    for prefix in ("std", "bat"):
        mine = [r for r in seg if r["user_id"] and r["user_id"].startswith(prefix) or prefix in (r["anonymous_id"] or "")]
        assert {r["name"] for r in mine} >= {"identify", "alias"}
    assert {r["name"] for r in seg} == {"page_view", "product_added", "screen_view", "identify", "group", "alias"}
    assert all(r["is_bot"] is False and r["ua_browser"] == "Chrome" for r in seg)
    [page_view] = [r for r in seg if r["name"] == "page_view"][:1]
    assert page_view["url"] and page_view["url"].startswith(site) and page_view["title"] == "Segment fixture"
    assert msgspec.json.decode(page_view["context"])["library"]["name"] == "analytics.js"
    snow = [r for r in rows if r["source"] == "snowplow"]
    assert {"page_view", "add-to-basket", "video_play", "page_ping"} <= {r["name"] for r in snow}
    assert all(r["session_id"] and r["anonymous_id"] for r in snow)
    rejected = read_lake(collector.data_dir, "rejected")
    assert {(r["tenant"], r["reason"]) for r in rejected} == {("_unknown", "unknown_app_id")}

    cfg = str(collector.config_path)
    assert cli.main(["convert", "--config", cfg, "--no-progress"]) == 0
    settings, sections = load(cfg)
    events = run_query(open_store(settings, sections), "SELECT anonymous_id, stitched_user, source, name FROM events",
                       settings.data_dir).to_pylist()
    assert len(events) == len({r["event_id"] for r in rows})
    anon = {e["stitched_user"] for e in events if e["source"] == "segment" and e["name"] == "product_added"}
    assert anon == {"std-user", "bat-user"}  # the anonymous browsing, stitched by identify
    assert {e["stitched_user"] for e in events if e["anonymous_id"] in ("std-earlier", "bat-earlier")} == {"std-user", "bat-user"}
    # the Snowplow page's pings give its page view an engaged time and a scroll depth
    [sp_view] = run_query(open_store(settings, sections), "SELECT engaged_ms, max_scroll_pct, url FROM pageviews "
                          "WHERE url LIKE '%snowplow.html%app=shop-web%'", settings.data_dir).to_pylist()
    assert sp_view["engaged_ms"] >= 1000 and sp_view["max_scroll_pct"] > 20
    assert cli.main(["analyze", "--config", cfg]) == 0
    capsys.readouterr()
    profile = open_profiles(settings.profiles).get("demo", "std-user")
    assert profile is not None and len(profile["anonymous_ids"]) >= 2
