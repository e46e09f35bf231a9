"""``beaconlake demo``: a living pipeline on a sample shop, in one command.

    beaconlake demo [--dir ./beaconlake-demo] [--port 8080] [--people 150] [--days 28]
                    [--browsers 3] [--interval-mins 1] [--duration SECS]

Writes a config with a demo tenant in ``--dir`` (kept between runs), starts ``beaconlake up`` on
it, serves the shop on the next port, posts a week of simulated visitors' events to the collector,
walks a few real headless-Chromium visitors through the shop, asks for a convert + analyze run as
soon as the history is in the lake, and keeps live visitors coming until Ctrl-C (or ``--duration``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from beaconlake import config
from beaconlake.errors import BeaconlakeError, ConfigError
from beaconlake.starter import write_starter

log = logging.getLogger("beaconlake.demo")

# The demo's additions to the starter config: quick flushes and runs, and a purchase funnel that
# the simulator's and the shop's events both walk through.
EXTRA = """
[schedule]
convert_interval_mins = {interval}
first_run_delay_secs = 20

[[tenants.sequences]]
name = "browsed_to_purchase"
within_secs = 3600
steps = [
  {{ name = "product_view" }},
  {{ name = "add_to_cart" }},
  {{ name = "purchase" }},
]
"""


def _positive(kind: type, low: float):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected at least {low}, got {value}")
        return value

    return parse


def write_config(folder: Path, port: int, interval_mins: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = write_starter(folder, port=port)
    text = path.read_text().replace("flush_interval_secs = 10", "flush_interval_secs = 2")
    head, sep, tenants = text.partition("[[tenants]]")
    # top-level sections must come before the [[tenants]] array, the extra sequence after it
    schedule, _, sequence = EXTRA.format(interval=interval_mins).partition("[[tenants.sequences]]")
    path.write_text(head + schedule.lstrip("\n") + "\n" + sep + tenants + "\n[[tenants.sequences]]" + sequence)
    config.load(path)  # what we wrote must be valid
    return path


def _check_free(port: int) -> None:
    with socket.socket() as s:
        # as the servers do: connections of a previous run waiting in TIME_WAIT do not make it busy
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise ConfigError(f"port {port} is in use (another beaconlake?); pick others with --port / --site-port") from None


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BeaconlakeError(f"beaconlake up exited with code {proc.returncode}; see its log above")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise BeaconlakeError(f"the collector at {url} was not ready after {timeout:.0f} s")


def _wait_spool_empty(spool: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(spool.glob("*/*.seg")):
            return True
        time.sleep(0.25)
    return False


def _request_run(url: str, admin_key: str) -> None:
    req = urllib.request.Request(url + "/v1/dashboard/pipeline/run", b"", {"authorization": f"Bearer {admin_key}"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        json.loads(r.read())


def _interrupt(signum: int, _frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def cmd_demo(args: argparse.Namespace) -> int:
    from beaconlake.demo import browsers, drive
    from beaconlake.demo.site import CATEGORIES, ShopSite

    folder = Path(args.dir).resolve()
    path = folder / config.DEFAULT_CONFIG_NAME
    if not path.exists():
        write_config(folder, args.port, args.interval_mins)
    settings = config.load(path)
    tenant = settings.tenants[0]
    url = f"http://127.0.0.1:{args.port}"
    site_port = args.site_port or args.port + 1
    for port in (args.port, site_port):
        _check_free(port)
    cmd = [sys.executable, "-m", "beaconlake.cli", "--log-level", args.log_level, "up", "--config", str(path), "--port", str(args.port)]
    env = {**os.environ, "BEACONLAKE__SCHEDULE__CONVERT_INTERVAL_MINS": str(args.interval_mins)}
    log_path = folder / "beaconlake.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    stop = threading.Event()
    site = None
    # `up` runs in a session of its own (a terminal's Ctrl-C must not reach it before the
    # visitors stop), so a SIGTERM or SIGHUP to the demo has to come down the same way as Ctrl-C
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        _wait_ready(url, proc)
        site = ShopSite("127.0.0.1", site_port, url, tenant.write_key).start()
        print(f"""
beaconlake demo is running (logs: {log_path})

  dashboard   {url}/
  read key    {tenant.read_key}
  admin key   {tenant.admin_key or "(none: add admin_key to the tenant to run from the dashboard)"}
  shop site   {site.url}/
  data        {settings.data_dir}

Press Ctrl-C to stop.
""", flush=True)
        poster = drive.Poster(url, tenant.write_key)
        t0 = time.monotonic()
        n = drive.post_all(poster, drive.history(args.people, args.days, args.seed, int(time.time() * 1000)))
        print(f"simulated visitors: {n} visits of {args.people} people over {args.days} day(s), "
              f"{poster.accepted:,} events accepted ({poster.rejected} rejected) in {time.monotonic() - t0:.1f} s", flush=True)
        threading.Thread(target=drive.live, args=(poster, args.people, args.days, args.seed, args.live_every_secs, stop),
                         name="demo-live", daemon=True).start()
        why_not = browsers.available() if args.browsers else "--browsers 0"
        if why_not:
            print(f"real browser visitors: skipped, {why_not}", flush=True)
        else:
            done = browsers.run(site.url, args.browsers, args.seed, list(CATEGORIES))
            print(f"real browser visitors: {done} headless Chromium visit(s) through the shop", flush=True)
        # the first convert + analyze as soon as the history is in the lake, not an interval later
        _wait_spool_empty(Path(settings.data_dir) / "spool", 30)
        if tenant.admin_key:
            _request_run(url, tenant.admin_key)
            print("convert + analyze requested: tables and profiles appear on the dashboard in a few seconds", flush=True)
        else:  # a demo folder from before admin keys: the scheduler's first run does it
            print(f"convert + analyze: at the scheduler's first run, within {args.interval_mins} min", flush=True)
        deadline = time.monotonic() + args.duration if args.duration else None
        while proc.poll() is None and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping…", flush=True)
    finally:
        stop.set()
        if site is not None:
            site.stop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the clean shutdown: the spool is delivered
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return 0 if proc.returncode in (0, -signal.SIGTERM) else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the pipeline on a sample shop with simulated and real visitors")
    p.add_argument("--dir", default="beaconlake-demo", help="folder for the demo's config and data (default ./beaconlake-demo)")
    p.add_argument("--port", type=_positive(int, 1), default=8080, help="collector and dashboard port (default 8080)")
    p.add_argument("--site-port", type=_positive(int, 1), help="the shop's port (default: --port + 1)")
    p.add_argument("--people", type=_positive(int, 1), default=150, help="simulated people (default 150)")
    p.add_argument("--days", type=_positive(int, 1), default=28, help="days of simulated history (default 28: enough history to train the propensity model)")
    p.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    p.add_argument("--browsers", type=_positive(int, 0), default=3, help="real headless Chromium visitors (default 3; 0: none)")
    p.add_argument("--interval-mins", type=_positive(float, 0.01), default=1.0,
                   help="convert + analyze interval of the demo (default 1)")
    p.add_argument("--live-every-secs", type=_positive(float, 0.05), default=2.0, help="a live visit this often (default 2)")
    p.add_argument("--duration", type=_positive(float, 1), help="stop after this many seconds (default: at Ctrl-C)")
    p.set_defaults(func=cmd_demo)
