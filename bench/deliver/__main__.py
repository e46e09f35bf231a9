"""CPU of lake delivery per request: one deliverer pass over a spool of tracker-like batches,
delivery alone and with the realtime consumer (sequence detection and indexing) in front of it.

    python bench/deliver                          # 40 segments x 400 requests, 3 runs of each
    python bench/deliver --baseline /tmp/bl-main/src   # the same, also for another tree's src/

CPU seconds are the deliverer process's own (``time.process_time``), so a shared machine's load
changes them less than it changes wall time; runs alternate between the configurations and the
medians are printed, with each one's ratio to delivery alone of this tree. The bodies are
``bench/ingest``'s (10 events each, uuid4 ids), one request per spool record, as the collector
writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SEQUENCES = [{"name": "viewed_then_added", "within_secs": 600, "steps": [{"name": "page_view"}, {"name": "add_to_cart"}]}]


def child(segments: int, per_segment: int, realtime: bool) -> dict:
    """One measurement, in this process (run with the tree under test first on sys.path)."""
    import asyncio

    import msgspec

    sys.path.insert(0, str(REPO / "bench" / "ingest"))
    from workload import make_batch

    from beaconlake import config
    from beaconlake.backends.storage import open_storage
    from beaconlake.ingest import deliver, spool
    from beaconlake.ingest.deliver import Deliverer
    from beaconlake.telemetry import Metrics
    from beaconlake.types import SpoolRecord, UserAgent

    if hasattr(deliver, "use_system_allocator"):  # as the deliverer process does (since 2026-12-01)
        deliver.use_system_allocator()
    rng, now = random.Random(7), int(time.time() * 1000)
    ua = UserAgent("Chrome", "120", "Linux", None, "desktop", False)
    with tempfile.TemporaryDirectory() as tmp:
        tenant = {"id": "t1", "write_key": "wk_aaaaaaaaaaaaaaaaaaaa", "read_key": "rk_aaaaaaaaaaaaaaaaaaaa",
                  "sequences": SEQUENCES}
        s = config.parse({"tenants": [tenant], "spool": {"durability": "os"}, "realtime": {"enabled": realtime}},
                         Path(tmp), environ={})

        async def fill() -> None:
            for _ in range(segments):
                w = spool.SegmentWriter(s.spool_path, s.spool)
                for _ in range(per_segment):
                    rec = SpoolRecord("t1", now, now, "203.0.113.9", "Mozilla/5.0 Chrome/120", ua, make_batch(rng, now),
                                      None, [])
                    await w.commit(w.append(msgspec.msgpack.encode(rec)))
                await w.seal()

        asyncio.run(fill())
        metrics, storage = Metrics(), open_storage(s.storage)
        consumers = []
        if realtime:
            from beaconlake.realtime.consumer import RealtimeConsumer

            consumers.append(RealtimeConsumer(s, storage, metrics))
        d = Deliverer(s, storage, metrics, consumers=consumers)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        delivered = d.run_once()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        d.close()
        return {"segments": delivered, "events": int(metrics.value("beaconlake_events_delivered_total")),
                "cpu": cpu, "wall": wall}


def measure(src: Path, segments: int, per_segment: int, realtime: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, str(HERE), "--child", str(segments), str(per_segment), str(int(realtime))],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1")))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segments", type=int, default=40)
    ap.add_argument("--requests", type=int, default=400, help="requests (spool records) per segment")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline", type=Path, help="another beaconlake's src/ folder, measured in alternation")
    a = ap.parse_args()
    trees = {"this tree": REPO / "src"}
    if a.baseline:
        trees["baseline"] = a.baseline.resolve()
    configs = [(tree, rt) for tree in trees for rt in (False, True)]
    cpu: dict[tuple[str, bool], list[float]] = {c: [] for c in configs}
    requests = a.segments * a.requests
    print(f"{a.segments} segments x {a.requests} requests of 10 events; load average {os.getloadavg()[0]:.1f}")
    for run in range(a.runs):
        for tree, rt in configs:
            got = measure(trees[tree], a.segments, a.requests, rt)
            assert got["segments"] == a.segments and got["events"] == requests * 10, got
            cpu[(tree, rt)].append(got["cpu"])
            print(f"  run {run + 1}: {tree}, {'delivery + realtime' if rt else 'delivery alone'}: "
                  f"{got['cpu']:.2f} s CPU, {got['wall']:.2f} s wall", flush=True)
    reference = statistics.median(cpu[("this tree", False)])
    print(f"medians of {a.runs} (load average now {os.getloadavg()[0]:.1f}):")
    for tree, rt in configs:
        med = statistics.median(cpu[(tree, rt)])
        print(f"  {tree:9}  {'delivery + realtime' if rt else 'delivery alone':19}  {med / requests * 1e6:6.0f} us CPU "
              f"per request  ({med / reference:.2f}x this tree's delivery alone)")


if __name__ == "__main__":
    main()
