"""Fixtures every test folder may use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    """The one sync Playwright of the session, for every folder's browser tests. It runs an event
    loop on the main thread for as long as it is open, so a second one cannot start beside it:
    the tracker's and the dashboard's browsers are both launched from this one."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw
