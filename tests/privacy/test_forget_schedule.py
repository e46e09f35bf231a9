"""The scheduler carries out pending erasures at the start of a run, all of a tenant's in one
batched pass, and leaves a request too recent for every deliverer's suppression list to the next."""

from __future__ import annotations

import time

import msgspec
from starlette.testclient import TestClient
from support import read_lake

from beaconlake import config
from beaconlake.backends.storage import open_storage
from beaconlake.lake.privacy import id_hasher
from beaconlake.privacy.requests import pending, request, status
from beaconlake.schedule.run import run_once
from beaconlake.serve.app import create_app
from beaconlake.up import build_deliverer

TENANT = {"id": "shop", "write_key": "wk_shopshopshopshopshop", "read_key": "rk_shopshopshopshopshop"}


def _lake(tmp_path, refresh_secs: float) -> config.Settings:
    settings = config.parse({"tenants": [TENANT], "spool": {"min_free_disk_bytes": 0}, "schedule": {"enabled": False},
                             "privacy": {"suppression_refresh_secs": refresh_secs}}, tmp_path, environ={})
    now = int(time.time() * 1000)
    events = [{"level": "mid", "name": "page_view", "anonymous_id": f"person-{i}", "client_ts": now - 60_000 + i}
              for i in range(6)]
    with TestClient(create_app(settings)) as client:
        r = client.post(f"/v1/events?k={TENANT['write_key']}", headers={"content-type": "application/json"},
                        content=msgspec.json.encode({"sent_at": now, "events": events}))
        assert r.status_code == 200
    d = build_deliverer(settings)
    d.run_once()
    d.close()
    assert run_once(settings, "interval")["status"] == "ok"
    return settings


def test_a_run_carries_out_the_pending_requests_in_one_pass(tmp_path):
    settings = _lake(tmp_path, refresh_secs=0.2)
    storage = open_storage(settings.storage)
    hasher = id_hasher(storage, None)
    first = request(storage, hasher, settings, "shop", ["person-1"], "http")
    second = request(storage, hasher, settings, "shop", ["person-2", "person-3"], "http")
    time.sleep(0.3)
    record = run_once(settings, "interval")
    assert record["status"] == "ok" and record["erasures"] == 2, record
    assert {r["anonymous_id"] for r in read_lake(settings.data_path)} == {"person-0", "person-4", "person-5"}
    for req in (first, second):
        done = status(storage, "shop", req.id)
        assert done.state == "done" and done.removed["requests_in_batch"] == 2 and done.removed["raw"] == 3
        assert done.removed["raw_files_rewritten"] == 1  # one pass rewrote the one file for both
    assert pending(storage) == []


def test_a_request_too_recent_waits_for_the_next_run(tmp_path):
    settings = _lake(tmp_path, refresh_secs=600)
    storage = open_storage(settings.storage)
    req = request(storage, id_hasher(storage, None), settings, "shop", ["person-1"], "http")
    record = run_once(settings, "interval")
    assert record["status"] == "ok" and (record["erasures"], record["erasures_waiting"]) == (0, 1), record
    assert status(storage, "shop", req.id).state == "pending"
    assert "person-1" in {r["anonymous_id"] for r in read_lake(settings.data_path)}


def test_a_pass_cut_short_is_finished_by_the_next_one(tmp_path, monkeypatch):
    """Every step is idempotent and the request stays pending until its done record: a pass that
    dies after rewriting the raw lake (here: the table step raises) leaves the request pending,
    and the next pass finishes it."""
    from beaconlake.privacy import forget, tables

    settings = _lake(tmp_path, refresh_secs=0)
    storage = open_storage(settings.storage)
    req = request(storage, id_hasher(storage, None), settings, "shop", ["person-1"], "cli")

    def dies(*args, **kwargs):
        raise OSError("the machine went away")

    monkeypatch.setattr(tables, "forget_table", dies)
    try:
        forget.carry_out(settings)
    except OSError:
        pass
    else:
        raise AssertionError("the pass should have died")
    assert status(storage, "shop", req.id).state == "pending"
    assert "person-1" not in {r["anonymous_id"] for r in read_lake(settings.data_path)}  # the raw step ran
    monkeypatch.undo()
    [carried] = forget.carry_out(settings).carried
    assert status(storage, "shop", req.id).state == "done"
    assert carried.removed["raw"] == 0 and carried.removed["table_events"] == 1  # the raw lake was done already
