"""Ingest benchmark: a real ``beaconlake up`` against nginx writing every body to its log.

Both servers get the same wrk load in the same run, on the same cores: POST /v1/events
with batches of 10 tracker-like events (about 2 KB a body) at each connection count. The
collector also gets the same events as Segment ``/v1/batch`` requests right after each native
run (``segment`` rows; ``--no-segment`` skips them): their ratio is the cost of the mapping.
Runs alternate nginx / beaconlake so the machine's noise hits both alike; the collector is
paused (SIGSTOP) while nginx is measured, so its lake delivery never takes nginx's CPU.
Figures are medians of ``--runs`` runs. Afterwards every acknowledged event is accounted
for: wrk's 2xx x 10 against the collector's /metrics, then /metrics against the rows the
lake holds once the collector has stopped and drained.

    python bench/ingest               # the headline figures: defaults, about 2.5 minutes
    python bench/ingest --workers 1,2 --durability fsync,os --runs 1 --duration 5

See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from procs import Collector, Nginx
from report import print_checks, print_table, show, summarize
from workload import EVENTS_PER_BATCH, Block, Load, Run, run_wrk

REPO = Path(__file__).resolve().parent.parent.parent
DELIVERED_PUBLISH_SECS = 1.5  # the workers and the deliverer publish their counters to /metrics every second
CATCH_UP_SECS = 60.0  # after a run, for the lake to hold every event accepted (spool.flush_interval_secs is 10)


def measure(load: Load, nginx: Nginx | None, workers: int, durability: str) -> Block:
    args = load.args
    block = Block(workers, durability)
    name = f"w{workers}-{durability}"
    servers = {}
    if args.baseline:
        servers["baseline"] = Collector(load.tmp / f"baseline-{name}", workers, durability, source=args.baseline)
    elif args.baseline_pii_off:  # this code, the demo tenant's PII scrubbing off
        servers["baseline"] = Collector(load.tmp / f"baseline-{name}", workers, durability,
                                        env={"BEACONLAKE__TENANTS__DEMO__PII__ENABLED": "false"})
    servers["beaconlake"] = Collector(load.tmp / f"collector-{name}", workers, durability)
    for label, col in servers.items():
        print(f"\n== {label}: beaconlake up --workers {workers}, spool.durability = {durability!r}  (port {col.port})",
              flush=True)
    try:
        roles = {}
        for label, col in servers.items():
            col.start()
            roles[label] = col.roles()
            print(f"   {label} processes: " + ", ".join(f"{pid} {role}" for pid, role in sorted(roles[label].items())),
                  flush=True)
        logged = nginx_ok = 0
        for run_no in range(0 if args.warmup else 1, args.runs + 1):
            seconds = args.warmup if run_no == 0 else args.duration
            for c in [max(args.connections)] if run_no == 0 else args.connections:
                if nginx is not None:
                    with paused(*servers.values()):
                        r = run_wrk(nginx.url + "/v1/events", load.script("/v1/events"), args, seconds,
                                    Run("nginx", 0, "-", c, run_no), nginx.roles())
                    size, first = nginx.take_log()
                    logged, nginx_ok = logged + size, nginx_ok + r.ok
                    if r.ok and first not in load.escaped:
                        print(f"  !! nginx's log does not hold the request body (first line: {first[:120]!r})")
                    block.runs.append(r)
                    show(r, args.runs)
                for label, col in servers.items():  # each collector alone on the machine while it is measured
                    path = f"/v1/events?k={col.write_key}"
                    with paused(*(other for other in servers.values() if other is not col)):
                        r = delivered_run(col, roles[label], col.url + path, load.script(path), args, seconds,
                                          Run(label, workers, durability, c, run_no))
                    block.runs.append(r)
                    show(r, args.runs)
                    if label == "beaconlake" and not args.no_segment:  # the same events through Segment's API
                        with paused(*(other for other in servers.values() if other is not col)):
                            r = delivered_run(col, roles[label], col.url + "/v1/batch", load.segment_script(col.write_key),
                                              args, seconds, Run("segment", workers, durability, c, run_no))
                        block.runs.append(r)
                        show(r, args.runs)
        if nginx is not None:
            block.nginx_log = {"bytes": logged, "lines_estimated": round(logged / load.mean_line), "requests_2xx": nginx_ok}
        settled = {label: col.settled_metrics() for label, col in servers.items()}
    except BaseException:
        for col in servers.values():
            col.stop(timeout=20)
        raise
    for label, col in servers.items():
        t0 = time.monotonic()
        col.stop()
        mine = (label, "segment") if label == "beaconlake" else (label,)
        account = accounting([r for r in block.runs if r.server in mine], settled[label], time.monotonic() - t0, col)
        if label == "beaconlake":
            block.accounting = account
        else:
            block.baseline_accounting = account
        if args.keep:
            print(f"   kept {col.folder}")
        else:
            shutil.rmtree(col.folder, ignore_errors=True)
    return block


@contextlib.contextmanager
def paused(*collectors: Collector) -> Iterator[None]:
    """SIGSTOP the other servers (their lake delivery included) so they take no CPU meanwhile."""
    for col in collectors:
        col.pause()
    try:
        yield
    finally:
        for col in collectors:
            col.resume()


def delivered_run(col: Collector, roles: dict[int, str], url: str, script: Path, args: argparse.Namespace,
                  seconds: float, run: Run) -> Run:
    """One wrk run against ``col`` from an empty spool (not the last run's backlog), with lake
    delivery's CPU seconds and delivered events (``Run.delivery``) from the run's start until it has
    caught up with the run. A deliverer that falls behind does part of a run's work after wrk stops,
    which the CPU it used during the run does not show: its cost an event is this CPU over these events."""
    col.wait_delivered()
    start = col.delivery_progress(roles)
    r = run_wrk(url, script, args, seconds, run, roles)
    time.sleep(DELIVERED_PUBLISH_SECS)  # every worker's accepted count has reached /metrics
    accepted = col.metrics().get("beaconlake_events_accepted_total", 0.0)
    # caught up once the lake holds every event accepted so far: the run's open segments are
    # sealed within spool.flush_interval_secs, so a short run waits for them too
    deadline = time.monotonic() + CATCH_UP_SECS
    while (progress := col.delivery_progress(roles))[1] < accepted and time.monotonic() < deadline:
        time.sleep(0.5)
    if progress[1] < accepted:
        print(f"  !! delivery had not caught up {CATCH_UP_SECS} s after the run ({progress[1]:,.0f} of "
              f"{accepted:,.0f} events): its CPU an event is over what it delivered", flush=True)
    r.delivery = progress[0] - start[0], progress[1] - start[1]
    return r


def accounting(runs: list[Run], m: dict[str, float], stop_secs: float, col: Collector) -> dict:
    return {
        "wrk_2xx_events": sum(r.ok for r in runs) * EVENTS_PER_BATCH,
        "accepted": int(m.get("beaconlake_events_accepted_total", 0)),
        "received": int(m.get("beaconlake_events_received_total", 0)),
        "rejected": {k: int(v) for k, v in m.items() if k.startswith("beaconlake_events_rejected_total") and v},
        "requests": {k.split('"')[1]: int(v) for k, v in m.items() if k.startswith("beaconlake_requests_total{") and v},
        # wrk stops counting at the deadline: requests in flight then are answered but not counted.
        "max_uncounted_events": sum(r.connections for r in runs) * EVENTS_PER_BATCH,
        "stop_and_drain_secs": round(stop_secs, 1),
        **col.lake(),
    }


def measured_code() -> str:
    """Which beaconlake the collector runs (the one this interpreter imports), and its git state."""
    found = subprocess.run([sys.executable, "-c", "import beaconlake, sys; sys.stdout.write(beaconlake.__file__)"],
                           capture_output=True, text=True)
    if found.returncode:
        raise SystemExit(f"beaconlake is not importable by {sys.executable}: pip install -e .\n{found.stderr}")
    where = Path(found.stdout).resolve().parent
    git = subprocess.run(["git", "-C", str(where), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return f"{where}" + (f" (git {git.stdout.strip()})" if git.returncode == 0 else "")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected numbers >= 1, got {text!r}")
    return values


def durability_list(text: str) -> list[str]:
    values = [x.strip() for x in text.split(",") if x.strip()]
    if not values or any(v not in ("fsync", "os") for v in values):
        raise argparse.ArgumentTypeError(f"expected fsync, os or fsync,os; got {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cores = len(os.sched_getaffinity(0))
    p = argparse.ArgumentParser(prog="python bench/ingest", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--workers", type=int_list, default=str(cores), help="collector worker processes; 1,2 measures each")
    p.add_argument("--durability", type=durability_list, default="fsync", help="spool.durability; fsync,os measures both")
    p.add_argument("--connections", type=int_list, default="64,256", help="wrk connections, comma-separated")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    p.add_argument("--runs", type=int, default=3, help="measured runs per server and connection count (medians)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load per server first (0: none)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--timeout", type=float, default=5.0, help="wrk request timeout, seconds")
    p.add_argument("--bodies", type=int, default=32, help="distinct request bodies, rotated per request")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated bodies")
    p.add_argument("--no-nginx", action="store_true", help="skip the nginx reference (no ratio)")
    p.add_argument("--no-segment", action="store_true", help="skip the Segment /v1/batch load (the same events through "
                   "the Segment protocol door, measured after each native run)")
    p.add_argument("--baseline-pii-off", action="store_true",
                   help="the baseline is this code with PII scrubbing off ([tenants.pii] enabled = false): "
                        "the cost of the default rules, measured in alternation")
    p.add_argument("--baseline", type=Path, help="another beaconlake's src/ folder (e.g. a git archive of main), "
                   "measured in alternation with this one, same load; its dependencies must be installed here")
    p.add_argument("--keep", action="store_true", help="keep the temp folder: configs, logs, the lake")
    p.add_argument("--json", type=Path, default=REPO / "bench" / "out" / f"ingest-{dt.datetime.now():%Y%m%d-%H%M%S}.json",
                   help="write the figures here")
    args = p.parse_args(argv)
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        if not (args.baseline / "beaconlake" / "cli.py").is_file():
            p.error(f"--baseline {args.baseline}: no beaconlake/cli.py in it; give the src/ folder of a checkout")
    if args.runs < 1 or args.duration <= 0 or args.threads < 1 or args.bodies < 1:
        p.error("--runs, --threads and --bodies must be >= 1 and --duration > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # unwind: every `finally` stops what it started
        signal.signal(sig, _interrupt)
    code = measured_code()
    tmp = Path(tempfile.mkdtemp(prefix="beaconlake-bench-"))
    load = Load(args, tmp)
    cores = len(os.sched_getaffinity(0))
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0].split(" [")[0]
    print(f"beaconlake ingest benchmark, {dt.datetime.now().isoformat(timespec='seconds')}, {cores} cores, {wrk_v}")
    print(f"collector code: {code}")
    if args.baseline:
        print(f"baseline code: {args.baseline} (measured in alternation: nginx, baseline, beaconlake)")
    print(f"load: POST /v1/events, {args.bodies} distinct bodies of {EVENTS_PER_BATCH} events (mean {load.mean_body:,.0f} B), "
          f"{args.threads} wrk threads; {args.runs} x {args.duration:g} s per server and connection count "
          f"(+{args.warmup:g} s warm-up)")
    overrides = sorted(k for k in os.environ if k.startswith("BEACONLAKE__"))
    if overrides:
        print(f"!! environment overrides reach the collector: {', '.join(overrides)}")
    nginx = None if args.no_nginx else Nginx(tmp / "nginx")
    blocks: list[Block] = []
    try:
        if nginx:
            nginx.start()
            print(f"nginx {nginx.url}: writes each body to {nginx.log.name} (mirror pattern, escape=json)")
        for durability in args.durability:
            for workers in args.workers:
                blocks.append(measure(load, nginx, workers, durability))
    except KeyboardInterrupt:
        print("\ninterrupted: stopped what the benchmark started", file=sys.stderr)
        return 130
    finally:
        if nginx:
            nginx.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    summaries = [summarize(b, args.connections) for b in blocks]
    print(f"\nmedians of {args.runs} x {args.duration:g} s; ratio = beaconlake req/s / nginx req/s at the same "
          f"connections;\ncores = CPU used during the runs by the server (+ lake delivery) / wrk / everything else "
          f"on the machine (noise: high values make the run suspect)")
    print_table([r for rows in summaries for r in rows])
    print()
    trustworthy = all([print_checks(b, rows, max(args.connections)) for b, rows in zip(blocks, summaries)])

    out = args.json
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "code": code, "cores": cores, "wrk": wrk_v, "mean_body_bytes": load.mean_body,
        "blocks": [{"workers": b.workers, "durability": b.durability, "summary": rows,
                    "runs": [asdict(r) | {"rps": r.rps} for r in b.runs], "accounting": b.accounting,
                    "baseline_accounting": b.baseline_accounting,
                    "nginx_log": b.nginx_log} for b, rows in zip(blocks, summaries)],
    }, indent=2))
    print(f"\nfigures written to {out}")
    if not trustworthy:
        print("!! some requests failed or some events are unaccounted for: these figures are not trustworthy")
    return 0 if trustworthy else 1


if __name__ == "__main__":
    sys.exit(main())
