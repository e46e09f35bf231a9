"""Fault tests: a real ``beaconlake up`` under load, a fault injected, then the invariant.

Each test prints its collector's log when it fails (the log says what the service did about
the fault), and never leaves a process behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fault_checks import SERVER_ADMIN_KEY
from support import Collector, start_collector


@pytest.fixture
def up(tmp_path, request) -> Iterator:
    """``up(workers=2, **config_overrides)``: start ``beaconlake up`` with 2 workers, realtime on,
    the server admin key set and the scheduler's interval runs off (tests ask for runs)."""
    started: list[Collector] = []

    def start(workers: int = 2, folder=None, preexec_fn=None, **overrides) -> Collector:
        overrides.setdefault("server", {}).setdefault("admin_key", SERVER_ADMIN_KEY)
        overrides.setdefault("schedule", {}).setdefault("enabled", False)
        collector = start_collector(folder or tmp_path, args=["--workers", str(workers)], config_overrides=overrides,
                                    preexec_fn=preexec_fn)
        started.append(collector)
        return collector

    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for collector in started:
        collector.stop()
        collector.kill()
        if failed and collector.log_path.exists():
            print(f"--- {collector.log_path} (last 12000 characters) ---")
            print(collector.log_path.read_text(errors="replace")[-12000:])


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
