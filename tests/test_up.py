"""The composition root of ``beaconlake up`` and ``beaconlake deliver``: the deliverer they build
(with the realtime consumer injected), its restart, and the fault of a consumer."""

import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import msgspec
import pytest
from starlette.testclient import TestClient
from support import free_port, read_lake, start_collector, write_config

from beaconlake import config
from beaconlake.ingest import spool
from beaconlake.realtime.consumer import RealtimeConsumer
from beaconlake.serve.app import create_app
from beaconlake.up import build_deliverer


def high_level_event(name: str) -> dict:
    return {"level": "high", "name": name, "anonymous_id": "a1", "event_id": str(uuid.uuid4()),
            "client_ts": int(time.time() * 1000), "props": {"plan": "pro"}}


def post(client, key: str, events: list[dict]) -> None:
    now = int(time.time() * 1000)
    r = client.post(f"/v1/events?k={key}", content=msgspec.json.encode({"sent_at": now, "events": events}),
                    headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["rejected"] == [], r.text


def high_level_names(client, read_key: str) -> list[str]:
    r = client.get("/v1/high-level", headers={"authorization": f"Bearer {read_key}"})
    assert r.status_code == 200, r.text
    return [e["name"] for e in r.json()["events"]]


def test_the_deliverer_gets_the_realtime_consumer_only_when_realtime_is_enabled(tmp_path):
    on = config.parse({}, tmp_path / "on", environ={})
    d = build_deliverer(on)
    try:
        [consumer] = d.consumers
        assert isinstance(consumer, RealtimeConsumer)
        assert consumer.metrics is d.metrics  # its counts go out with the deliverer's snapshot
    finally:
        d.close()
    off = config.parse({"realtime": {"enabled": False}}, tmp_path / "off", environ={})
    assert build_deliverer(off).consumers == []


def test_a_failing_realtime_pass_is_counted_and_the_lake_still_gets_the_events(tmp_path, caplog):
    settings = config.parse({"tenants": [{"id": "t1", "write_key": "wk_aaaaaaaaaaaaaaaaaaaa",
                                          "read_key": "rk_aaaaaaaaaaaaaaaaaaaa"}],
                             "spool": {"min_free_disk_bytes": 0}}, tmp_path, environ={})
    with TestClient(create_app(settings)) as client:
        post(client, "wk_aaaaaaaaaaaaaaaaaaaa", [high_level_event("signed_up"), high_level_event("upgraded")])
    d = build_deliverer(settings)
    # the detector's checkpoint cannot be written: the consumer's pass raises
    (settings.realtime_path / "detector.bin").mkdir(parents=True)
    d.run_once()
    assert sorted(r["name"] for r in read_lake(settings.data_path)) == ["signed_up", "upgraded"]
    assert spool.sealed_segments(settings.spool_path) == []
    assert d.metrics.value("beaconlake_realtime_failures_total") == 1
    assert "realtime: process failed; lake delivery continues" in caplog.text


def test_the_deliver_command_feeds_the_realtime_stage(tmp_path):
    config_path = write_config(tmp_path, free_port(), {"realtime": {"browser_grace_secs": 0}})
    settings = config.load(config_path)
    tenant = settings.tenants[0]
    with TestClient(create_app(settings)) as client:
        post(client, tenant.write_key, [high_level_event("signed_up")])
        assert high_level_names(client, tenant.read_key) == []  # indexing is the deliverer's work
    r = subprocess.run([sys.executable, "-m", "beaconlake.cli", "deliver", "--config", str(config_path)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [row["name"] for row in read_lake(settings.data_path)] == ["signed_up"]
    assert (settings.realtime_path / "detector.bin").is_file()  # closed: its state checkpointed
    with TestClient(create_app(settings)) as client:
        assert high_level_names(client, tenant.read_key) == ["signed_up"]


def deliverer_pids(run_path) -> set[int]:
    """The deliverer processes that have published metrics (``deliver-<pid>.json``) and still run."""
    pids = set()
    for path in (run_path / "metrics").glob("deliver-*.json"):
        pid = int(path.stem.removeprefix("deliver-"))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        pids.add(pid)
    return pids


def wait_for(fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.mark.slow
def test_a_killed_deliverer_comes_back_with_its_realtime_consumer(tmp_path):
    c = start_collector(tmp_path, config_overrides={"realtime": {"browser_grace_secs": 0}})
    settings = config.load(c.config_path)
    try:
        [first] = wait_for(lambda: deliverer_pids(settings.run_path))
        os.kill(first, signal.SIGKILL)
        [second] = wait_for(lambda: deliverer_pids(settings.run_path) - {first})
        assert second != first
        now = int(time.time() * 1000)
        r = httpx.post(f"{c.url}/v1/events?k={c.write_key}", headers={"content-type": "application/json"},
                       content=msgspec.json.encode({"sent_at": now, "events": [high_level_event("signed_up")]}))
        assert r.status_code == 200, r.text
        c.wait_delivered()
        assert [row["name"] for row in read_lake(c.data_dir)] == ["signed_up"]
        with httpx.Client(base_url=c.url) as client:  # indexed by the restarted deliverer's consumer
            assert wait_for(lambda: high_level_names(client, c.read_key) == ["signed_up"], 10)
    finally:
        c.stop()
    assert "lake delivery process exited with code -9; restarting it" in c.log_path.read_text()
