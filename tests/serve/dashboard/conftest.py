"""One real ``beaconlake up`` with known events and simulated visitors,
converted and analyzed through the scheduler, shared by the dashboard's tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dashboard_support import BROWSER_UA, SEQUENCES, Shop, known_events
from support import start_collector

from beaconlake import config


@pytest.fixture(scope="session")
def shop(tmp_path_factory) -> Iterator[Shop]:
    folder = tmp_path_factory.mktemp("dashboard")
    collector = start_collector(folder, config_overrides={
        "schedule": {"enabled": False},  # runs only when asked: the tests know what each one saw
        "tenant": {"sequences": SEQUENCES},
    })
    try:
        s = Shop(collector, config.load(collector.config_path))
        now = int(time.time() * 1000)
        r = httpx.post(f"{collector.url}/v1/events?k={collector.write_key}", json={"sent_at": now, "events": known_events(now)},
                       headers={"user-agent": BROWSER_UA})  # else the parsed user agent flags a bot, left out of Traffic
        assert r.status_code == 200 and r.json()["rejected"] == [], r.text
        assert s.post_simulated(people=40, days=3) > 0
        collector.wait_delivered()
        s.run_pipeline()
        yield s
    finally:
        collector.stop()
        log = Path(collector.log_path)
        if log.exists() and "Traceback" in log.read_text():
            print(log.read_text()[-5000:])
