"""A few real browser visitors: headless Chromium (Debian's package) through Playwright, walking
the shop like a person, so the low-level events (pointer, scroll, clicks) come from a real
browser running the real ``beaconlake.js``."""

from __future__ import annotations

import logging
import random
from pathlib import Path

log = logging.getLogger("beaconlake.demo")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def available() -> str | None:
    """Why real browsers cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    return None


def _walk(page, site: str, rng: random.Random, categories: list[str]) -> None:
    page.goto(site + "/")
    page.mouse.move(200, 200)
    page.mouse.move(400, 300, steps=5)
    cat = rng.choice(categories)
    page.click(f"a.category[href='/{cat}/']")
    page.wait_for_load_state()
    for _ in range(2):  # two products of one category: the starter's considered_then_added sequence
        page.click(f"li.product a >> nth={rng.randrange(10)}")
        page.wait_for_load_state()
        page.mouse.wheel(0, 900)
        page.wait_for_timeout(300)
        page.go_back()
        page.wait_for_load_state()
    page.click("li.product a >> nth=0")
    page.wait_for_load_state()
    page.click("#add-to-cart")
    page.wait_for_timeout(200)
    if rng.random() < 0.7:
        page.goto(site + "/cart")
        page.click("#to-checkout")
        page.wait_for_load_state()
        page.click("#pay")
        page.wait_for_selector("#thanks", state="visible")
    page.goto(site + "/search?q=rain+jacket")
    page.wait_for_timeout(1200)  # a flush interval: what is queued goes out before the page closes


def run(site: str, visitors: int, seed: int, categories: list[str]) -> int:
    """Walk ``visitors`` fresh browser visitors through the shop; returns how many finished."""
    from playwright.sync_api import Error as BrowserError
    from playwright.sync_api import sync_playwright

    rng = random.Random(seed)
    done = 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for i in range(visitors):
                mobile = i % 2 == 1
                ctx = browser.new_context(viewport={"width": 390, "height": 760} if mobile else {"width": 1280, "height": 800},
                                          has_touch=mobile, is_mobile=mobile)
                try:
                    _walk(ctx.new_page(), site, rng, categories)
                    done += 1
                except BrowserError as exc:  # one visitor's trouble (a timeout) must not end the demo
                    log.warning("browser visitor %d stopped: %s", i + 1, exc)
                finally:
                    ctx.close()
        finally:
            browser.close()
    return done
