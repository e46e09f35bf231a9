"""Fixtures every test folder may use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")


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
