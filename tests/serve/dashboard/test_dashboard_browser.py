"""The dashboard in headless Chromium: log in with the read key, open every view, and see it
render data without console errors; the funnel shows the known step counts; search finds a
person. Screenshots of each view go to test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import FUNNEL, ODD_ID

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
    yield b
    b.close()


class Page:
    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))
        page.on("console", lambda m: self.problems.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning") else None)

    def open(self, view: str) -> Any:
        """Open a view by its hash route and wait until its data is drawn."""
        self.page.evaluate("h => { location.hash = h }", view)
        name = view.split("/")[0].split("?")[0]
        self.page.wait_for_selector(f"#view[data-loaded='{name}']", timeout=15_000)
        return self.page

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def dash(browser, shop) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    p = Page(ctx.new_page())
    p.page.goto(shop.url + "/")
    p.page.fill("#key", shop.read_key)
    p.page.click("#login button")
    p.page.wait_for_selector("#view[data-loaded='live']", timeout=15_000)
    yield p
    ctx.close()


def test_a_wrong_key_is_refused(browser, shop):
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(shop.url + "/")
    page.fill("#key", shop.collector.write_key)
    page.click("#login button")
    page.wait_for_function("() => document.querySelector('#login-error').textContent.includes('refused')")
    assert page.is_hidden("#nav")
    ctx.close()


def test_live(dash):
    page = dash.open("live")
    assert int(page.inner_text(".kpi .v")) >= 1  # active people: the known visitor a minute ago
    assert page.locator("#view svg rect").count() > 5
    assert "search" in page.inner_text("#view")
    dash.shot("live")


def test_traffic(dash):
    page = dash.open("traffic")
    kpis = dict(zip(page.locator(".kpi .l").all_inner_texts(), page.locator(".kpi .v").all_inner_texts(), strict=True))
    assert int(kpis["sessions"].replace(",", "")) >= 8 and "%" in kpis["bounce rate"]
    assert page.locator("#view svg path").count() >= 2  # sessions and people lines
    assert "/pricing" in page.inner_text("#view") or page.locator("#view svg").count() >= 8
    dash.shot("traffic")


def test_sequences_funnel_shows_the_known_step_counts(dash):
    page = dash.open("sequences")
    card = page.locator(".funnel[data-name='signup_funnel']")
    counts = [int(x) for x in card.locator("rect.step").evaluate_all("rs => rs.map(r => r.dataset.people)")]
    assert counts == FUNNEL
    assert "6 people" in card.inner_text() and "Completed matches (high_level_events): 1 by 1 people" in card.inner_text()
    dash.shot("sequences")


def _search(page: Any, q: str) -> None:
    page.fill("#q", q)
    page.click("#search button")
    # the view says the query it shows ("… matching “q” …"): the previous search's view, still
    # marked loaded until the hash change is handled, does not count
    page.wait_for_function("q => decodeURIComponent(location.hash).includes('q=' + q) && "
                           "document.querySelector('#view').dataset.loaded === 'people' && "
                           "document.querySelector('#view').innerText.includes('\u201c' + q + '\u201d')", arg=q)


def test_people_search_finds_a_person_and_opens_their_page(dash, shop):
    page = dash.open("people")
    # profiles: text search over interests and segment labels
    _search(page, "tents")
    assert page.locator(".card.profiles a.person").count() >= 1
    dash.shot("people")
    _search(page, "user-")  # simulated people sign in as user-NNNNNN (which of them, the draw of the day decides)
    found = page.locator(".card.ids a.person")
    assert found.count() >= 1
    who = found.first.inner_text()
    found.first.click()
    page.wait_for_selector("#view[data-loaded='person']")
    assert page.inner_text("h1.pid") == who
    assert page.locator(".session").count() >= 1
    # and their profile: traits with the features behind them, segment, interests
    text = page.inner_text("#view")
    assert "Traits" in text and "engagement" in text and "Interests" in text
    dash.shot("person")


def test_person_page_of_a_known_visitor(dash):
    page = dash.open("person/known-k1")
    text = page.inner_text("#view")
    assert "/pricing" in text and "/signup" in text and "signup_funnel" in text


def test_person_page_of_an_id_with_slash_percent_hash_and_emoji(dash):
    page = dash.open("people")
    page.evaluate("id => { location.hash = '#person/' + encodeURIComponent(id) }", ODD_ID)  # what link() writes
    page.wait_for_selector("#view[data-loaded='person']")
    assert page.inner_text("h1.pid") == ODD_ID
    assert "/odd" in page.inner_text("#view .session")  # found by the server, under the whole id


def test_an_answer_that_is_not_json_is_shown_not_a_parse_error(browser, shop):
    """A proxy's HTML error page in place of the server's JSON: the view says what came back."""
    ctx = browser.new_context()
    dash = Page(ctx.new_page())
    dash.page.route("**/v1/dashboard/people/**", lambda route: route.fulfill(
        status=502, body="<html><body>Bad gateway</body></html>", headers={"content-type": "text/html"}))
    dash.page.goto(shop.url + "/#person/someone")
    dash.page.fill("#key", shop.read_key)
    dash.page.click("#login button")
    dash.page.wait_for_selector("#view .error", timeout=15_000)
    assert "HTTP 502: <html><body>Bad gateway" in dash.page.inner_text("#view .error")
    assert not [p for p in dash.problems if not p.startswith("console.error: Failed to load resource")], dash.problems
    ctx.close()


def test_segments(dash, shop):
    page = dash.open("segments")
    assert page.locator(".card.segment").count() >= 2
    assert re.search(r"\d+ people", page.inner_text(".card.segment"))
    dash.shot("segments")


def test_pipeline_with_the_read_key_shows_the_tenant_and_no_run_button(dash, shop):
    page = dash.open("pipeline")
    assert "ok" in page.inner_text("#view table")
    kpis = dict(zip(page.locator(".kpi .l").all_inner_texts(), page.locator(".kpi .v").all_inner_texts(), strict=True))
    assert int(kpis["events accepted"].replace(",", "")) >= 20 and "events rejected" in kpis
    assert "spool, undelivered" not in kpis  # a server-wide figure
    assert page.locator("#run-now").count() == 0
    assert "needs the tenant's admin key" in page.inner_text("#view")
    # every node from its heartbeats; a tenant's key sees no figures of other tenants' traffic
    nodes = page.locator(".card", has_text="Nodes (last heartbeat)").inner_text()
    assert "(active jobs)" in nodes and "s ago" in nodes and "delivery lag" not in nodes


def test_pipeline_and_run_now_with_the_admin_key(browser, shop):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    dash = Page(ctx.new_page())
    dash.page.goto(shop.url + "/")
    dash.page.fill("#key", shop.admin_key)
    dash.page.click("#login button")
    dash.page.wait_for_selector("#view[data-loaded='live']", timeout=15_000)
    assert "(admin)" in dash.page.inner_text("#who")
    page = dash.open("pipeline")
    assert "ok" in page.inner_text("#view table")
    runs_before = page.locator("#view table tr").count()
    page.click("#run-now")
    page.wait_for_function(f"() => document.querySelectorAll('#view table tr').length > {runs_before}"
                           " && !document.querySelector('#view table').innerText.includes('running')", timeout=60_000)
    assert "requested (demo)" in page.inner_text("#view table")
    dash.shot("pipeline")
    assert dash.problems == []
    ctx.close()


def test_no_console_errors(dash):
    # last: every view above was opened in this page
    assert dash.problems == []
