"""Cluster ingest benchmark: events/s acknowledged by 1, 2, 3 collector nodes sharing S3 and Redis.

Each node is a ``beaconlake up --workers 1`` in a folder of its own (its own spool), all with the
lake on one moto S3 server and the live counters in one Redis, as collector nodes of a cluster
are. The client round-robins: one wrk per node, started together, the connections split evenly
between them (a load balancer's round robin spreads connections). The load is bench/ingest's:
tracker-like batches of 10 events. Afterwards each node's /metrics is checked against wrk's 2xx.

All nodes, S3, Redis and wrk share this machine's cores: the curve shows what one more node costs
and brings here, not what N machines would do. Figures are medians of ``--runs`` runs.

    python bench/cluster                     # 1, 2, 3 nodes: about 4 minutes
    python bench/cluster --nodes 1,2 --runs 1 --duration 5

See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "bench" / "ingest"))

from procs import Collector, free_port, http_get, machine_cpu_seconds, stop_group  # noqa: E402
from workload import EVENTS_PER_BATCH, lua_script, make_bodies  # noqa: E402

WRITE_KEY = "wk_bench_cluster_0123456789"


class Service:
    """moto's S3 server or redis-server, in a session of its own (its CPU is its own, not ours)."""

    def __init__(self, args: list[str], port: int, log: Path) -> None:
        self.port = port
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        stop_group(self.proc, signal.SIGTERM, 10)


def start_services(tmp: Path) -> tuple[Service, Service]:
    redis_exe = shutil.which("redis-server")
    if redis_exe is None:
        raise SystemExit("redis-server not found: apt-get install redis-server")
    s3_port, redis_port = free_port(), free_port()
    s3 = Service([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)], s3_port, tmp / "moto.log")
    redis = Service([redis_exe, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--dir", str(tmp)], redis_port, tmp / "redis.log")
    deadline = time.monotonic() + 30
    while True:
        try:
            if http_get(f"http://127.0.0.1:{s3_port}/", 1.0)[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"moto's S3 server did not start:\n{(tmp / 'moto.log').read_text()[-2000:]}")
        time.sleep(0.2)
    import boto3

    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}", region_name="us-east-1",
                 aws_access_key_id="bench", aws_secret_access_key="bench").create_bucket(Bucket="bench-lake")
    return s3, redis


def node_env(s3: Service, redis: Service) -> dict[str, str]:
    """What a collector node of the cluster is told: the shared lake, counters and tenant key."""
    return {
        "BEACONLAKE__STORAGE__TYPE": "s3", "BEACONLAKE__STORAGE__BUCKET": "bench-lake",
        "BEACONLAKE__STORAGE__ENDPOINT_URL": f"http://127.0.0.1:{s3.port}",
        "BEACONLAKE__STORAGE__ACCESS_KEY_ID": "bench", "BEACONLAKE__STORAGE__SECRET_ACCESS_KEY": "bench",
        "BEACONLAKE__COUNTERS__TYPE": "redis", "BEACONLAKE__COUNTERS__URL": f"redis://127.0.0.1:{redis.port}/0",
        "BEACONLAKE__TENANTS__DEMO__WRITE_KEY": WRITE_KEY,
        "BEACONLAKE__SCHEDULE__ENABLED": "false",  # collectors only: no convert competes for the cores
    }


def wrk_all(urls: list[str], script: Path, connections: int, seconds: float, timeout: float) -> tuple[int, int, float]:
    """One wrk per node, started together, ``connections`` split evenly: (2xx requests, non-2xx, seconds)."""
    share = max(1, connections // len(urls))
    procs = [subprocess.Popen(["wrk", "-t", "1", "-c", str(share), "-d", f"{seconds:g}s", "--timeout", f"{timeout:g}s",
                               "-s", str(script), url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True) for url in urls]
    ok = bad = 0
    longest = 0.0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + timeout + 60)
        m = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
        if proc.returncode or not m:
            raise SystemExit(f"wrk failed ({proc.returncode}):\n{out}")
        s = json.loads(m.group(1))
        ok += s["requests"] - s["status_errors"]
        bad += s["status_errors"] + s["connect_errors"] + s["read_errors"] + s["write_errors"] + s["timeouts"]
        longest = max(longest, s["duration_us"] / 1e6)
    return ok, bad, longest


def measure(n: int, args: argparse.Namespace, tmp: Path, script: Path, env: dict[str, str]) -> dict:
    folder = tmp / f"nodes-{n}"
    nodes: list[Collector] = []
    saved = dict(os.environ)
    os.environ.update(env)  # Collector copies the environment when it is made
    try:
        nodes = [Collector(folder / f"node-{i}", 1, "fsync") for i in range(n)]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        for node in nodes:
            node.start()
        urls = [f"{node.url}/v1/events?k={WRITE_KEY}" for node in nodes]
        acked = wrk_all(urls, script, args.connections, args.warmup, args.timeout)[0] * EVENTS_PER_BATCH
        rates, errors, loads = [], 0, []
        for run in range(args.runs):
            for node in nodes:
                node.wait_delivered()
            busy0, _ = machine_cpu_seconds()
            t0 = time.monotonic()
            ok, bad, secs = wrk_all(urls, script, args.connections, args.duration, args.timeout)
            cores = (machine_cpu_seconds()[0] - busy0) / (time.monotonic() - t0)
            load = os.getloadavg()[0]  # other work on a shared machine: above the cores, figures are low
            rates.append(ok * EVENTS_PER_BATCH / secs)
            loads.append(round(load, 1))
            acked += ok * EVENTS_PER_BATCH
            errors += bad
            print(f"  {n} node(s), run {run + 1}: {rates[-1]:,.0f} events/s acknowledged, {bad} errors, "
                  f"machine busy {cores:.2f} cores, load average {load:.1f}", flush=True)
        accepted = sum(node.settled_metrics().get("beaconlake_events_accepted_total", 0) for node in nodes)
        # wrk stops counting at its deadline: requests in flight then are accepted but not counted
        in_flight = (args.runs + 1) * args.connections * EVENTS_PER_BATCH
        check = "ok" if acked <= accepted <= acked + in_flight else "MISMATCH"
        print(f"  accounting: wrk 2xx x {EVENTS_PER_BATCH} = {acked:,}, nodes' accepted_total = {int(accepted):,} ({check})")
        return {"nodes": n, "events_per_sec": statistics.median(rates), "runs": rates, "load_average": loads,
                "errors": errors,
                "wrk_2xx_events": acked, "accepted_total": int(accepted), "accounting": check}
    finally:
        for node in nodes:
            node.stop(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="1,2,3", help="collector node counts to measure (default 1,2,3)")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections in all, split over the nodes")
    ap.add_argument("--duration", type=float, default=10, help="seconds per measured run (default 10)")
    ap.add_argument("--runs", type=int, default=3, help="measured runs per node count (default 3)")
    ap.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load first (default 2)")
    ap.add_argument("--timeout", type=float, default=5, help="wrk request timeout, seconds")
    ap.add_argument("--bodies", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="where the figures go (default bench/out/cluster-<time>.json)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")
    counts = [int(x) for x in args.nodes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bl-bench-cluster-") as name:
        tmp = Path(name)
        script = tmp / "load.lua"
        script.write_text(lua_script(make_bodies(args.bodies, args.seed), f"/v1/events?k={WRITE_KEY}"))
        s3, redis = start_services(tmp)
        results = []
        try:
            env = node_env(s3, redis)
            for n in counts:
                print(f"\n== {n} collector node(s), 1 worker each, lake on moto S3, counters in Redis", flush=True)
                results.append(measure(n, args, tmp, script, env))
        finally:
            s3.stop()
            redis.stop()
    report(results, args)


def report(results: list[dict], args: argparse.Namespace) -> None:
    base = results[0]["events_per_sec"] if results and results[0]["nodes"] == 1 else None
    print(f"\n{'nodes':>5} {'events/s':>10} {'vs 1 node':>9} {'errors':>6}  load average")
    for r in results:
        ratio = f"{r['events_per_sec'] / base:.2f}x" if base else "-"
        print(f"{r['nodes']:>5} {r['events_per_sec']:>10,.0f} {ratio:>9} {r['errors']:>6}  "
              + " ".join(map(str, r["load_average"])))
    print(f"\n(median of {args.runs} runs of {args.duration:g} s, {args.connections} connections split over the nodes; "
          f"every node, moto S3, Redis and wrk share this machine's {os.cpu_count()} cores, so more nodes compete "
          "for the same CPU: the curve is what a node costs here, not what N machines would give)")
    out = args.json or REPO / "bench" / "out" / f"cluster-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        out.write_text(json.dumps({"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                   "cores": os.cpu_count(), "args": {k: str(v) for k, v in vars(args).items()},
                                   "results": results}, indent=2))
        print(f"figures: {out}")


if __name__ == "__main__":
    main()
