"""kill -9 of each process of ``beaconlake up`` under load, at a random moment: a server worker,
the lake deliverer, and the scheduler while its convert run is committing.

After each one the service comes back by itself (the dead process is replaced, ``/readyz`` is
200, new events are acknowledged, the delivery lag falls back), ``/metrics`` says what happened,
and in the end every acknowledged event is in the raw lake and in the Iceberg ``events``
table exactly once.
"""

from __future__ import annotations

import collections
import random
import time
import tomllib
from pathlib import Path

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
from loadgen import Load
from fault_procs import alive, kill9, role_pids, wait_role

pytestmark = pytest.mark.slow


def metadata_files(data_dir: Path) -> set[Path]:
    """The Iceberg metadata files of every table: one more per commit."""
    return set((data_dir / "warehouse").glob("*/*/metadata/*.metadata.json"))


def kill_scheduler_mid_commit(collector, admin_key: str, rng: random.Random) -> tuple[int, int]:
    """Ask for a run and kill -9 the scheduler after the ``k``-th table commit of its convert
    (k drawn at random): some tables committed, the rest and the converted-files record not.
    Returns (k, the scheduler's pid)."""
    [scheduler] = wait_role(collector.proc.pid, "bl-schedule")
    before = metadata_files(collector.data_dir)
    k = rng.randint(1, 3)
    request_run(collector.url, admin_key)
    deadline = time.monotonic() + 60
    while len(metadata_files(collector.data_dir) - before) < k:
        assert time.monotonic() < deadline, "the requested convert run committed nothing within 60 s"
        time.sleep(0.002)
    kill9(scheduler)
    return k, scheduler


def test_kill_9_of_each_role_under_load_loses_nothing_and_heals_itself(up):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"random seed {seed}")
    collector = up(workers=2)
    root = collector.proc.pid
    admin_key = tomllib.loads(collector.config_path.read_text())["tenants"][0]["admin_key"]
    load = Load(collector.url, collector.write_key, connections=8).start()
    try:
        load.wait_acked(2000)

        # a server worker
        victim = rng.choice(wait_role(root, "bl-worker", 2))
        time.sleep(rng.uniform(0, 0.5))
        kill9(victim)
        wait_role(root, "bl-worker", 2, exclude={victim})
        wait_until(lambda: Metrics(collector.url)("beaconlake_http_worker_restarts_total") == 1, 10,
                   "beaconlake_http_worker_restarts_total counts the restart")
        load.wait_acked(1000)

        # the lake deliverer, between or in the middle of deliveries
        [deliverer] = wait_role(root, "bl-deliver")
        time.sleep(rng.uniform(0, 1.0))
        kill9(deliverer)
        wait_role(root, "bl-deliver", exclude={deliverer})
        load.wait_acked(1000)
        assert_recovered(collector.url, collector.write_key)

        # the scheduler, while its convert run is committing table by table
        runs_before = {r["run_id"] for r in pipeline(collector.url, SERVER_ADMIN_KEY)["runs"]}
        k, scheduler = kill_scheduler_mid_commit(collector, admin_key, rng)
        print(f"scheduler killed after {k} table commit(s)")
        wait_role(root, "bl-schedule", exclude={scheduler})  # replaced, without an operator
        killed = wait_run(collector.url, SERVER_ADMIN_KEY, runs_before)
        assert killed["status"] == "interrupted", killed
        request_run(collector.url, admin_key)  # the next run redoes what the killed one left
        run = wait_run(collector.url, SERVER_ADMIN_KEY, runs_before | {killed["run_id"]})
        assert run["status"] == "ok", run
        load.wait_acked(1000)
    finally:
        load.stop()

    assert not load.unexpected(), f"answers no fault may cause: {load.unexpected()} {load.errors_5xx}"
    assert_recovered(collector.url, collector.write_key)
    assert role_pids(root, "bl-deliver") and role_pids(root, "bl-schedule")
    collector.stop()  # a clean stop delivers the rest
    acked = load.ledger.acked_ids()
    raw = lake_ids(collector.data_dir)
    ours = collections.Counter({i: n for i, n in raw.items() if load.ledger.number(i) is not None})
    assert_exactly_once(acked, ours, ledger=load.ledger)

    from beaconlake import config
    from beaconlake.convert.run import convert

    convert(config.load(collector.config_path), progress=False)  # what arrived after the last run
    events = table_ids(collector.config_path)
    assert_exactly_once(acked, collections.Counter({i: n for i, n in events.items() if i in ours}),
                        where="the Iceberg events table")
    assert events.keys() == raw.keys(), "the events table and the raw lake hold different events"


def test_kill_9_of_up_itself_leaves_no_process_behind_and_the_next_up_delivers_everything(up, tmp_path):
    """Found while writing docs/operations.md: after kill -9 of ``bl-up``, its deliverer and
    scheduler went on running, adopted by init, beside the next ``up``'s own. Every process of
    the group must stop by itself, and a new ``up`` on the same folder delivers what was left."""
    collector = up(workers=2)
    root = collector.proc.pid
    load = Load(collector.url, collector.write_key, connections=6).start()
    try:
        load.wait_acked(1000)
        helpers = wait_role(root, "bl-deliver") + wait_role(root, "bl-schedule") + wait_role(root, "bl-worker", 2)
        kill9(root)
    finally:
        load.stop()
    collector.proc.wait(10)
    wait_until(lambda: not [pid for pid in helpers if alive(pid)], 30, "every process of the killed up stopped by itself")
    again = up(workers=2, folder=tmp_path)  # the same data folder: the spool's lock is free again
    assert_recovered(again.url, again.write_key)
    again.stop()
    ours = collections.Counter({i: n for i, n in lake_ids(again.data_dir).items() if load.ledger.number(i) is not None})
    assert_exactly_once(load.ledger.acked_ids(), ours, ledger=load.ledger)
