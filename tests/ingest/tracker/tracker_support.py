"""Helpers of the tracker's browser tests: the fixture pages' server, a page that records what
it did, and reading what reached the collector's raw lake.

A module of its own, not conftest.py: `from conftest import ...` is ambiguous where several test
folders have one.
"""

from __future__ import annotations

import functools
import html
import json
import sys
import threading
import time
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/support.py

from support import Collector, read_lake  # noqa: E402

from beaconlake.ingest.tracker.build import HERE as TRACKER_DIR  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
FIXTURES = TRACKER_DIR / "fixtures"

# The sequences of the shared collector's tenant, in the format of beaconlake.toml.
SEQUENCES = [
    {
        "name": "considered_then_added",
        "within_secs": 600,
        "steps": [
            {"name": "product_view", "where": [{"field": "props.category", "op": "exists"}]},
            {"name": "product_view", "same": ["props.category"]},
            {"name": "add_to_cart", "where": [{"field": "props.price", "op": "gte", "value": 10}]},
        ],
    },
    {
        "name": "abandoned_cart",
        "within_secs": 60,
        "steps": [{"name": "add_to_cart"}],
        "not_followed_by": {"name": "checkout", "within_secs": 1},
    },
]


class Tab:
    """A page plus what it did: uncaught errors, console warnings, requests to the collector."""

    def __init__(self, page: Any, collector_url: str) -> None:
        self.page = page
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.posts: list[tuple[float, str]] = []  # (monotonic time, url) of POST /v1/events
        self.requests: list[str] = []  # every request to the collector
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.warnings.append(m.text) if m.type in ("warning", "error") else None)

        def seen(req: Any) -> None:
            if req.url.startswith(collector_url):
                self.requests.append(req.url)
                if req.method == "POST" and "/v1/events" in req.url:
                    self.posts.append((time.monotonic(), req.url))

        page.on("request", seen)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.page, name)

    def ids(self) -> dict[str, Any]:
        return self.page.evaluate("() => beaconlake.ids()")

    def wait_loaded(self) -> None:
        """Until the async tracker has booted (window.beaconlake replaced by the real API)."""
        self.page.wait_for_function("() => window.beaconlake && window.beaconlake._loaded")

    def wait_configured(self) -> None:
        """Until the tenant's settings from /v1/config are in (the tracker keeps them in storage)."""
        self.page.wait_for_function("() => Object.keys(localStorage).some(k => k.startsWith('bl_c_'))")


class Site:
    """Serves the fixture pages, filling in the collector, the key and the script tag's attributes."""

    def __init__(self) -> None:
        self.vars: dict[str, str] = {}
        handler = functools.partial(_FixtureHandler, self, directory=str(FIXTURES))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        # Another origin for outbound links: same server, another host name.
        self.other = f"http://localhost:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def use(self, collector: Collector, **attrs: Any) -> None:
        """Pages served from now on load the tracker from `collector` with `data-<attr>` set."""
        self.vars = {
            "collector": collector.url,
            "key": collector.write_key,
            "other": self.other,
            "attrs": " ".join(f'data-{k.replace("_", "-")}="{html.escape(str(v))}"' for k, v in attrs.items()),
        }

    def url(self, path: str) -> str:
        return f"{self.origin}/{path.lstrip('/')}"


class _FixtureHandler(SimpleHTTPRequestHandler):
    def __init__(self, site: Site, *args: Any, **kwargs: Any) -> None:
        self.site = site
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path.startswith("/spa/"):
            path = "/spa.html"  # the single-page app's routes, on a reload
        file = FIXTURES / path.lstrip("/")
        if not file.is_file() or file.suffix != ".html":
            return super().do_GET()
        text = file.read_text()
        for name, value in self.site.vars.items():
            text = text.replace("{{" + name + "}}", value)
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def lake_events(collector: Collector, anonymous_id: str | None = None) -> list[dict[str, Any]]:
    """Rows of the raw lake, props and context decoded, optionally of one browser only."""
    rows = []
    for row in read_lake(collector.data_dir):
        if anonymous_id is not None and row["anonymous_id"] != anonymous_id:
            continue
        row["props"] = json.loads(row["props"]) if row["props"] else {}
        row["context"] = json.loads(row["context"]) if row["context"] else {}
        rows.append(row)
    return sorted(rows, key=lambda r: (r["client_ts"], r["context"].get("event_index", 0)))


def wait_for_events(
    collector: Collector,
    until: Callable[[list[dict[str, Any]]], bool],
    anonymous_id: str | None = None,
    timeout: float = 20.0,
    tab: Tab | None = None,
) -> list[dict[str, Any]]:
    """Poll the lake until `until(rows)` holds; fail with what did arrive otherwise.

    Pass the `tab` whose page.route handlers must keep answering meanwhile: Playwright's sync
    API runs them only while Python waits inside a Playwright call, not in time.sleep.
    """
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = lake_events(collector, anonymous_id)
        if until(rows):
            return rows
        if tab is not None:
            tab.wait_for_timeout(200)
        else:
            time.sleep(0.2)
    names = [(r["level"], r["name"]) for r in rows]
    raise AssertionError(f"not in the lake after {timeout}s; {len(rows)} rows arrived: {names}")


def names(rows: list[dict[str, Any]], level: str | None = None) -> list[str]:
    return [r["name"] for r in rows if level is None or r["level"] == level]
