"""Fixtures for the tracker's browser tests: headless Chromium, a real collector, fixture pages.

The fixture pages (src/beaconlake/ingest/tracker/fixtures/) are served from their own origin,
another port on 127.0.0.1, so the tracker's requests to the collector are real cross-origin
requests. Events are checked where they end up: in the collector's raw lake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Collector, start_collector
from tracker_support import CHROMIUM, CHROMIUM_ARGS, SEQUENCES, Site, Tab


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


# -- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(has_touch=True, viewport={"width": 1000, "height": 700})
    yield ctx
    ctx.close()


@pytest.fixture
def tab(context: Any, collector: Collector) -> Tab:
    return Tab(context.new_page(), collector.url)


# -- the fixture pages' origin ---------------------------------------------------------------


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.server.shutdown()


# -- the collector and its lake --------------------------------------------------------------


@pytest.fixture(scope="session")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    c = start_collector(tmp_path_factory.mktemp("collector"), config_overrides={"tenant": {"sequences": SEQUENCES}})
    yield c
    c.stop()


@pytest.fixture
def own_collector(tmp_path: Path) -> Iterator[Callable[..., Collector]]:
    """A collector of the test's own, for tests that stop it or change its configuration."""
    started: list[Collector] = []

    def make(shedding: bool = False, **overrides: Any) -> Collector:
        folder = tmp_path / f"collector{len(started)}"
        folder.mkdir()
        # A collector that sheds load from the start never turns ready (/readyz answers 503
        # "shedding"), so wait for /healthz instead.
        c = start_collector(folder, config_overrides=overrides or None, ready_path="/healthz" if shedding else "/readyz")
        started.append(c)
        return c

    yield make
    for c in started:
        c.stop()
