"""The tracker's byte budget, measured on what the collector serves, and a build in step with its source."""

from __future__ import annotations

import importlib.util

import httpx
import pytest

import beaconlake
from beaconlake.ingest.tracker import build


def test_served_tracker_is_within_its_gzip_budget(collector):
    r = httpx.get(f"{collector.url}/beaconlake.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/javascript")
    assert r.content == build.BUILT.read_bytes()  # served verbatim: what the budget measures is what ships
    size = build.gzip_size(r.content)
    print(f"\nbeaconlake.js: {len(r.content)} bytes, {size} bytes gzipped (budget {build.BUDGET_GZIP_BYTES})")
    assert size <= build.BUDGET_GZIP_BYTES


def test_built_tracker_comes_from_the_current_source():
    source = build.SOURCE.read_text()
    stamp = build.stamp_of(build.BUILT.read_text())
    assert stamp == (build.source_version(source), build.source_digest(source)), (
        "src/beaconlake.js changed since beaconlake.js was built: run python -m beaconlake.ingest.tracker.build")
    assert stamp[0] == beaconlake.__version__


@pytest.mark.skipif(importlib.util.find_spec("calmjs") is None, reason="calmjs.parse (the tracker's minifier) is not installed")
def test_build_is_reproducible():
    assert build.minify(build.SOURCE.read_text()) == build.BUILT.read_text()
