"""``beaconlake demo`` for a short while: events from simulated and real browser visitors reach
every table, the scheduler's runs are recorded, and profiles appear."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import tomllib

import httpx
import pytest
from support import free_port

from beaconlake import config
from beaconlake.convert.query import run_query
from beaconlake.convert.run import open_store
from beaconlake.demo.browsers import available as browsers_available
from beaconlake.schedule.run import coordination_of

pytestmark = pytest.mark.slow


def test_demo_fills_every_table(tmp_path):
    port, site_port = free_port(), free_port()
    folder = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "beaconlake.cli", "demo", "--dir", str(folder), "--port", str(port), "--site-port", str(site_port),
         "--people", "30", "--days", "2", "--browsers", "1", "--interval-mins", "0.1", "--live-every-secs", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    profiles = 0
    try:
        started = time.monotonic()
        read_key, requested_done = None, False
        # run until profiles are served and the demo's early requested run has finished (it asks for it once the
        # history is delivered, up to 30 s later on a loaded machine), at least 35 s and at most 150 s, then stop
        # it like a service manager would
        while proc.poll() is None and time.monotonic() - started < 150:
            if profiles and requested_done and time.monotonic() - started >= 35:
                break
            time.sleep(1)
            cfg = folder / "beaconlake.toml"
            if read_key is None and cfg.exists():
                read_key = tomllib.loads(cfg.read_text())["tenants"][0]["read_key"]
            if read_key and not profiles:
                try:
                    r = httpx.get(f"http://127.0.0.1:{port}/v1/profiles?limit=1", headers={"authorization": f"Bearer {read_key}"})
                    profiles = r.json()["total"] if r.status_code == 200 else 0
                except httpx.HTTPError:
                    pass
            if read_key and not requested_done:
                log = coordination_of(config.load(cfg)).run_log()
                requested_done = any(r["trigger"].startswith("requested") and r["status"] != "running" for r in log.runs(100))
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    with pytest.raises(httpx.ConnectError):  # the SIGTERM reached `up` too: nothing left listening
        httpx.get(f"http://127.0.0.1:{port}/healthz")
    settings = config.load(folder / "beaconlake.toml")
    assert f"dashboard   http://127.0.0.1:{port}/" in out and f"read key    {read_key}" in out

    counts = run_query(open_store(settings), """
        SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM sessions) AS sessions,
               (SELECT count(*) FROM pageviews) AS pageviews, (SELECT count(*) FROM high_level_events) AS high_level,
               (SELECT count(*) FROM events WHERE level = 'low' AND user_agent LIKE '%HeadlessChrome%') AS browser_low,
               (SELECT count(*) FROM events WHERE name = 'purchase' AND user_agent LIKE '%HeadlessChrome%') AS browser_purchases
    """, settings.data_dir).to_pylist()[0]
    print(out, counts)
    assert counts["events"] > 0 and counts["sessions"] > 0 and counts["pageviews"] > 0
    assert "simulated visitors: " in out and counts["events"] > 1000 and counts["high_level"] > 0
    if browsers_available() is None:
        assert "1 headless Chromium visit(s)" in out
        assert counts["browser_low"] > 0  # pointer, scroll and clicks from a real browser, through beaconlake.js

    runs = coordination_of(settings).run_log().runs(100)
    assert runs and all(r["status"] in ("ok", "interrupted") for r in runs), runs
    assert any(r["trigger"].startswith("requested") for r in runs)  # the demo's early run
    assert profiles > 0
