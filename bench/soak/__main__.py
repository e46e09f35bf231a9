"""Soak: ``beaconlake up`` for a bounded time at half its measured capacity, with faults
injected on a schedule, and every acknowledged event accounted for in the lake.

    python bench/soak                       # 10 minutes: capacity first, then worker and deliverer
                                            # kills and spool corruption in turn, once a minute
    python bench/soak --minutes 2 --rate 1500
    python bench/soak --s3 --redis          # the lake on S3 (moto's server behind the fault suite's
                                            # proxy): storage outages too; Redis counters: Redis restarts

Prints what was acknowledged, delivered, lost (must be 0) and duplicated (must be 0), the p99
latency, the peak memory of each process role, the open descriptors minute by minute, and the
faults with the time the service took to recover from each by itself. Exits 1 when an
acknowledged event is lost or duplicated, or a fault was not recovered from. Not part of the
tests; needs the test extras (it drives the fault suite's tools in ``tests/faults/``).
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from array import array
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for helper in (REPO / "tests", REPO / "tests" / "faults"):  # the fault suite's tools, and tests/support.py
    if str(helper) not in sys.path:
        sys.path.insert(0, str(helper))

from fault_checks import SERVER_ADMIN_KEY, Metrics  # noqa: E402
from faults import Faults, Target  # noqa: E402
from loads import LoadProcesses, Result, account, local_lake_ids, storage_lake_ids  # noqa: E402
from support import Collector, free_port, write_config  # noqa: E402
from watch import Watch  # noqa: E402

RAMP_CONNECTIONS = (16, 32, 64)
RAMP_SECS = 6.0
FIRST_FAULT_SECS = 45.0
QUIET_END_SECS = 60.0  # no fault starts in the last minute: the last one recovers under load


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the soak (default 10)")
    p.add_argument("--rate", type=float, help="requests a second (10 events each); default: half the measured capacity")
    p.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    p.add_argument("--load-processes", type=int, default=2, help="load generator processes (default 2)")
    p.add_argument("--connections", type=int, default=32, help="load connections in all (default 32)")
    p.add_argument("--fault-every-secs", type=float, default=60.0, help="seconds between faults (default 60)")
    p.add_argument("--flush-secs", type=float, default=10.0, help="spool.flush_interval_secs (default 10, as shipped)")
    p.add_argument("--s3", action="store_true", help="the lake on S3 (moto) behind a fault proxy: storage outages")
    p.add_argument("--redis", action="store_true", help="counters in Redis: Redis restarts")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the temp folder (config, log, lake)")
    return p.parse_args()


class Services:
    """moto's S3 server (its own process) behind a FaultProxy, and Redis, when asked for."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.moto = self.proxy = self.redis = None
        self.s3_endpoint = None
        if args.s3:
            import boto3
            from fault_proxy import FaultProxy

            port = free_port()
            self.moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.s3_endpoint = f"http://127.0.0.1:{port}"
            s3 = boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1", aws_access_key_id="soak",
                              aws_secret_access_key="soak")
            deadline = time.monotonic() + 30
            while True:
                try:
                    s3.create_bucket(Bucket="soak-lake")
                    break
                except Exception:  # noqa: BLE001 - moto still starting
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            self.proxy = FaultProxy(("127.0.0.1", port))
        if args.redis:
            from fault_services import RedisServer

            self.redis = RedisServer()

    def overrides(self) -> dict:
        out: dict = {}
        if self.proxy is not None:
            out["storage"] = {"type": "s3", "bucket": "soak-lake", "prefix": "lake", "endpoint_url": self.proxy.url,
                              "access_key_id": "soak", "secret_access_key": "soak"}
        if self.redis is not None:
            out["counters"] = {"type": "redis", "url": self.redis.url, "key_prefix": "soak"}
        return out

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        if self.moto is not None:
            self.moto.terminate()
            self.moto.wait(10)
        if self.redis is not None:
            self.redis.close()


def measure_capacity(collector: Collector, args: argparse.Namespace, results: list[Result]) -> float:
    best = 0.0
    for connections in RAMP_CONNECTIONS:
        run = LoadProcesses(collector.url, collector.write_key, args.load_processes, connections, None, RAMP_SECS)
        got = run.results(RAMP_SECS + 60)
        results.extend(got)
        rate = sum(r.acked_requests for r in got) / RAMP_SECS
        print(f"  {connections} connections, as fast as answers come: {rate:,.0f} requests/s acknowledged", flush=True)
        best = max(best, rate)
    return best


def percentile(values: array, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> int:
    args = parse()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    folder = Path(tempfile.mkdtemp(prefix="bl-soak-"))
    print(f"bench/soak: {args.minutes:g} min, {args.workers} workers, seed {seed}, in {folder}", flush=True)
    services = Services(args, folder)
    collector = None
    try:
        port = free_port()
        overrides = {"server": {"admin_key": SERVER_ADMIN_KEY}, "schedule": {"enabled": False},
                     "spool": {"flush_interval_secs": args.flush_secs, "min_free_disk_bytes": 512 * 1024 * 1024},
                     "delivery": {"poll_interval_secs": 0.5}, **services.overrides()}
        config = write_config(folder, port, overrides)
        tenant = tomllib.loads(config.read_text())["tenants"][0]
        collector = Collector(folder, port, config, tenant["write_key"], tenant["read_key"], folder / "collector.log",
                              extra_args=["--workers", str(args.workers)]).start(timeout=60)
        results: list[Result] = []
        rate = args.rate
        if rate is None:
            print("capacity (a short ramp):", flush=True)
            rate = measure_capacity(collector, args, results) / 2
        seconds = args.minutes * 60
        print(f"soak at {rate:,.0f} requests/s ({rate * 10:,.0f} events/s) for {seconds:.0f} s", flush=True)

        started = time.monotonic()
        watch = Watch(collector.proc.pid).start(started)
        loads = LoadProcesses(collector.url, collector.write_key, args.load_processes, args.connections, rate, seconds)
        target = Target(collector.url, collector.write_key, tenant["read_key"], collector.proc.pid, collector.data_dir,
                        args.flush_secs, args.workers, services.proxy, services.redis)
        faults = Faults(target, rng, started)
        kinds = faults.kinds()
        injected = []
        next_at = FIRST_FAULT_SECS
        while next_at < seconds - QUIET_END_SECS:
            time.sleep(max(0.0, next_at - (time.monotonic() - started)))
            fault = faults.inject(kinds[len(injected) % len(kinds)])
            injected.append(fault)
            print(f"  {fault.at_secs:6.1f} s  {fault.kind:<16} recovered in "
                  f"{'-' if fault.recovery_secs is None else f'{fault.recovery_secs:.1f} s'}  {fault.detail}", flush=True)
            next_at += args.fault_every_secs
        soak = loads.results(seconds + 120)
        results.extend(soak)
        watch.stop()
        metrics = Metrics(collector.url)
        collector.stop(timeout=180)  # SIGTERM: the workers seal, the deliverer drains

        destroyed = set().union(*(f.destroyed for f in injected)) if injected else set()
        if services.proxy is not None:
            from beaconlake import config as bl_config
            from beaconlake.backends.storage import open_storage

            settings = bl_config.load(config)
            settings.storage.endpoint_url = services.s3_endpoint
            lake = storage_lake_ids(open_storage(settings.storage))
        else:
            lake = local_lake_ids(collector.data_dir)
        acc = account(results, lake, destroyed)
        latencies = array("d")
        for r in soak:
            latencies.extend(r.latencies)
        statuses: dict = {}
        for r in soak:
            for k, n in r.statuses.items():
                statuses[k] = statuses.get(k, 0) + n
        report(args, rate, acc, latencies, statuses, watch, injected, metrics, collector)
        failed = acc.lost or acc.duplicated or any(f.recovery_secs is None for f in injected)
        return 1 if failed else 0
    finally:
        if collector is not None:
            collector.kill()
        services.close()
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def report(args, rate, acc, latencies, statuses, watch, injected, metrics, collector) -> None:
    mb = 1024 * 1024
    left = sum(1 for _ in (collector.data_dir / "spool").glob("s*/*.seg"))
    print("\n== bench/soak results")
    print(f"  rate                {rate:,.0f} requests/s of 10 events, {args.connections} connections, "
          f"{args.workers} workers, {args.minutes:g} min")
    print(f"  answers (soak)      {dict(sorted(statuses.items(), key=str))}")
    print(f"  acknowledged        {acc.acknowledged:,} events (capacity ramp included)")
    print(f"  delivered           {acc.delivered:,}")
    print(f"  lost                {acc.lost:,}" + (f"  e.g. {acc.lost_examples}" if acc.lost else ""))
    print(f"  duplicated          {acc.duplicated:,}")
    print(f"  destroyed on purpose {acc.destroyed:,} (in the frames the soak corrupted: parked in spool/corrupt, reported)")
    print(f"  unacknowledged but delivered {acc.unacknowledged_delivered:,} (no 2xx: timeouts, resets; a client resends them)")
    print(f"  spool left          {left} segment(s) after the clean stop")
    print(f"  latency (soak)      p50 {percentile(latencies, 0.5) * 1000:.1f} ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
          f"max {max(latencies, default=0) * 1000:.0f} ms")
    print("  peak RSS (one process of each role): " + ", ".join(
        f"{role} {size / mb:.0f} MB" for role, size in sorted(watch.peak_rss.items())))
    print("  open descriptors, whole group, per minute (min-max): " + ", ".join(
        f"{m}: {lo}-{hi}" for m, lo, hi in watch.fds_by_minute()))
    print("  /metrics at the end: " + ", ".join(f"{name.removeprefix('beaconlake_')} {metrics(name):,.0f}" for name in (
        "beaconlake_http_worker_restarts_total", "beaconlake_delivery_failures_total", "beaconlake_segments_parked_total",
        "beaconlake_spool_unreadable_bytes_total", "beaconlake_destination_failures_total", "beaconlake_events_accepted_total",
        "beaconlake_events_delivered_total")))
    print("  faults:")
    for f in injected:
        rec = "NOT RECOVERED" if f.recovery_secs is None else f"recovered in {f.recovery_secs:.1f} s"
        print(f"    {f.at_secs:6.1f} s  {f.kind:<16} {rec}  {f.detail}")
    verdict = "OK" if not (acc.lost or acc.duplicated) and all(f.recovery_secs is not None for f in injected) else "FAILED"
    print(f"  verdict             {verdict}")


if __name__ == "__main__":
    sys.exit(main())
