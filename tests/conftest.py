"""Fixtures every test folder may use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
TESTS = Path(__file__).parent

# Tests that hold a running deployment to deadlines (delivery resumed within 20 s of a kill, a
# jobs node taking over within its lease) while loading it themselves. `make test` runs every
# other test in two processes (pytest-xdist), then these with the machine to themselves
# (`pytest -m alone`): a neighbour test's CPU would move their deadlines, not the product's.
ALONE = ("faults", "cluster", "schedule/test_jobs_failover.py")
# The two processes take whole files (`--dist loadgroup`, each test in its file's group). Files
# that share a costly session fixture share a group, so it is built once: the scenario lakes each
# engine converts (`baked`: one to two minutes for Spark's on two busy cores).
GROUPS = {"convert/test_convert_engines_equal.py": "convert-baked", "convert/test_convert_rules.py": "convert-baked"}


def pytest_itemcollected(item: pytest.Item) -> None:  # marked as collected, before pytest-xdist reads the groups
    where = item.path.relative_to(TESTS).as_posix()
    if any(where == a or where.startswith(a + "/") for a in ALONE):
        item.add_marker(pytest.mark.alone)
    item.add_marker(pytest.mark.xdist_group(GROUPS.get(where, where)))


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    """A sync Playwright for one test module's browser tests. It holds an event loop on the main
    thread for as long as it is open: a second one cannot start beside it, and a later test that
    runs an event loop of its own (the door harness, the spool tests) would find one running. So
    every browser test module gets it from here, and it is closed when that module ends."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw
