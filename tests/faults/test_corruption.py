"""Damaged bytes on disk, under load: sealed spool segments before delivery, a raw Parquet file
before convert.

What is damaged is lost (nothing can bring back a flipped byte's frame), but it is the only
loss: the rest of each segment is delivered, the segment is parked in ``spool/corrupt/`` with a
report that covers the damage, the raw file is quarantined with its reason; ``/metrics`` and
the Pipeline view say so; and every other acknowledged event is in the lake, and in the
``events`` table, exactly once.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import time
import tomllib
import uuid

import pyarrow.parquet as pq
import pytest
from fault_checks import (
    SERVER_ADMIN_KEY,
    Metrics,
    assert_exactly_once,
    assert_recovered,
    lake_ids,
    pipeline,
    request_run,
    table_ids,
    wait_run,
    wait_until,
)
from fault_damage import damage
from fault_procs import wait_role
from loadgen import Load

pytestmark = pytest.mark.slow


def test_damaged_spool_segments_are_parked_reported_and_the_rest_delivered(up):
    rng = random.Random(seed := random.randrange(1 << 30))
    print(f"random seed {seed}")
    collector = up(workers=2)
    load = Load(collector.url, collector.write_key, connections=6).start()
    destroyed: set[str] = set()
    try:
        load.wait_acked(1000)
        [deliverer] = wait_role(collector.proc.pid, "bl-deliver")
        os.kill(deliverer, signal.SIGSTOP)  # hung: segments pile up in spool/sealed
        try:
            stopped = time.monotonic()
            sealed_dir = collector.data_dir / "spool" / "sealed"
            # only segments sealed after the stop are damaged: one sealed before may be in the stopped
            # deliverer's hands already (read, not yet deleted), and damage on disk would prove nothing
            before = set(sealed_dir.glob("*.seg"))
            wait_until(lambda: len(set(sealed_dir.glob("*.seg")) - before) >= 4, 20, "four segments sealed since")
            time.sleep(max(0.0, 3.0 - (time.monotonic() - stopped)))
            # a hung deliverer cannot report its own lag: whoever serves /metrics reads the spool
            lag = Metrics(collector.url)("beaconlake_delivery_lag_seconds")
            assert lag >= 2.0, f"/metrics says the delivery lag is {lag}s while the deliverer has been stuck 3 s"
            victims = rng.sample(sorted(set(sealed_dir.glob("*.seg")) - before), 3)
            for path, how in zip(victims, ("flip", "flip", "cut"), strict=True):
                destroyed |= damage(path, rng, how)
        finally:
            os.kill(deliverer, signal.SIGCONT)
        corrupt = collector.data_dir / "spool" / "corrupt"
        wait_until(lambda: len(list(corrupt.glob("*.json"))) == 3, 20, "the three damaged segments parked")
        load.wait_acked(500)
    finally:
        load.stop()
    assert not load.unexpected(), f"{load.unexpected()} {load.errors_5xx}"
    assert_recovered(collector.url, collector.write_key)

    reports = [json.loads(p.read_text()) for p in sorted(corrupt.glob("*.json"))]
    assert sorted(r["segment"] for r in reports) == sorted(p.name for p in victims)
    for r in reports:
        assert r["reason"] == "corrupt" and r["unreadable_byte_ranges"] and r["events_delivered"] > 0, r
    m = Metrics(collector.url)
    assert m("beaconlake_segments_parked_total", reason="corrupt") == 3
    assert m("beaconlake_spool_parked_segments") == 3
    assert m("beaconlake_spool_unreadable_bytes_total") == sum(r["unreadable_bytes"] for r in reports)
    view = pipeline(collector.url, SERVER_ADMIN_KEY)
    assert sorted(p["segment"] for p in view["parked"]) == sorted(p.name for p in victims), view.get("parked")

    collector.stop()
    found = lake_ids(collector.data_dir)
    ours = collections.Counter({i: n for i, n in found.items() if load.ledger.number(i) is not None})
    assert destroyed and destroyed <= load.ledger.acked_ids()
    assert_exactly_once(load.ledger.acked_ids(), ours, ledger=load.ledger, destroyed=destroyed)


def test_a_damaged_raw_file_is_quarantined_and_the_rest_converts_once(up):
    rng = random.Random(seed := random.randrange(1 << 30))
    print(f"random seed {seed}")
    collector = up(workers=2)
    admin_key = tomllib.loads(collector.config_path.read_text())["tenants"][0]["admin_key"]
    load = Load(collector.url, collector.write_key, connections=6).start()
    try:
        load.wait_acked(3000)
        raw = collector.data_dir / "lake" / "raw"
        delivered = wait_until(lambda: sorted(raw.rglob("*.parquet"))[:-2], 20, "raw files in the lake")
        victim = rng.choice(delivered)  # not the newest two: written and renamed whole by now
        lost = set(pq.read_table(victim, columns=["event_id"]).column("event_id").to_pylist())
        data = bytearray(victim.read_bytes())
        at = rng.randrange(4, len(data) // 2)  # in the data pages, past the magic
        data[at:at + 64] = rng.randbytes(64)
        victim.write_bytes(bytes(data))

        runs_before = {r["run_id"] for r in pipeline(collector.url, SERVER_ADMIN_KEY)["runs"]}
        request_run(collector.url, admin_key)
        run = wait_run(collector.url, SERVER_ADMIN_KEY, runs_before)
        assert run["status"] == "ok" and run["quarantined"] == 1, (run["status"], run["quarantined"], run["error"])
        load.wait_acked(500)
    finally:
        load.stop()
    assert not load.unexpected(), f"{load.unexpected()} {load.errors_5xx}"
    key = victim.relative_to(collector.data_dir / "lake").as_posix()
    m = Metrics(collector.url)
    assert m("beaconlake_convert_quarantined_files_total", tenant="demo") == 1
    [q] = pipeline(collector.url, admin_key)["quarantined"]  # the tenant's own view lists it
    assert q["key"] == key and q["reason"], q
    assert not victim.exists() and (collector.data_dir / "lake" / "quarantine" / key).exists()

    collector.stop()
    from beaconlake import config
    from beaconlake.convert.run import convert

    convert(config.load(collector.config_path), progress=False)  # the rest of what arrived
    acked = load.ledger.acked_ids()
    assert lost <= acked
    events = table_ids(collector.config_path)
    ours = collections.Counter({i: n for i, n in events.items() if load.ledger.number(i) is not None})
    assert_exactly_once(acked, ours, ledger=load.ledger, destroyed=lost, where="the Iceberg events table")
    assert ours.keys() == {i for i in lake_ids(collector.data_dir) if load.ledger.number(i) is not None}


def test_a_damaged_event_id_is_caught_by_its_page_checksum_not_converted(tmp_path):
    """Found by the test above: a damaged page of event ids can decode without an error, to other
    ids, and DuckDB, which does not check page checksums, reads them as such. Delivery writes page
    checksums; convert checks them (``page_problem``) before any engine reads a new file."""
    import duckdb
    import pyarrow as pa

    from beaconlake.convert.quarantine import page_problem
    from beaconlake.lake.parquet import file_bytes
    from beaconlake.types import RAW_SCHEMA

    rng = random.Random(7)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(200)]
    now = 1_764_230_000_000
    rows = [{"event_id": i, "tenant": "demo", "level": "mid", "name": "page_view", "anonymous_id": "a", "client_ts": now,
             "sent_at": now, "received_at": now, "event_ts": now, "is_bot": False, "segment": "s"} for i in ids]
    clean = file_bytes(pa.Table.from_pylist(rows, schema=RAW_SCHEMA), 3)
    assert page_problem(pa.BufferReader(clean)) is None
    # a connection of its own, and a file of its own per flip: nothing another test set on DuckDB's
    # default connection, nor a cache of an earlier file at the same path, decides what is read
    db = duckdb.connect()
    for at in range(8, len(clean) // 2):  # the first flip that an engine alone reads without a word
        data = bytearray(clean)
        data[at] ^= 0x01
        path = tmp_path / f"damaged-{at}.parquet"
        path.write_bytes(bytes(data))
        try:
            read = [r[0] for r in db.sql(f"select event_id from read_parquet('{path}')").fetchall()]
        except duckdb.Error:
            continue
        if read != ids:
            break
    else:
        pytest.fail("no flipped byte gave other ids without an error: the premise of this test is gone")
    assert "fails its checksum" in (page_problem(pa.BufferReader(bytes(data))) or ""), at
