"""What the collector's door costs per request: ``EventsEndpoint.handle`` in process, no server.

The bodies are the ingest benchmark's (``workload.make_batch``: 10 tracker-like events, about
2.3 KB, one add-to-cart checked against the starter config's JSON Schema). The spool is a real
segment writer with ``durability = "os"``, so fsync latency does not hide the CPU cost. Timed
in CPU time of the thread that runs the requests (``time.thread_time``), which a machine shared
with other work disturbs much less than wall time. Prints the median and the minimum of
``--repeat`` timeit runs, microseconds per request.

    python bench/ingest/door_cost.py            # about 10 s
    python bench/ingest/door_cost.py --number 2000 --repeat 9
    python bench/ingest/door_cost.py --hostile  # 1 MB hostile bodies against a valid 1 MB batch
    python bench/ingest/door_cost.py --pii both # PII scrubbing (the default [tenants.pii] rules) on vs off,
                                                # timed in alternation in the same run
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import timeit
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import make_batch  # noqa: E402

from beaconlake import config  # noqa: E402
from beaconlake.ingest import spool  # noqa: E402
from beaconlake.ingest.collector.events import EventRequest, EventsEndpoint, SpoolPressure  # noqa: E402
from beaconlake.ingest.route import build_router  # noqa: E402
from beaconlake.starter import TEMPLATE  # noqa: E402
from beaconlake.telemetry import Metrics  # noqa: E402

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
_EVENT = b'{"level":"mid","name":"x","anonymous_id":'
HOSTILE = {  # each cut to 1 MiB
    "valid batch, 500 events": b'{"events":[' + b",".join(
        [_EVENT + b'"a","props":{"t":"' + b"x" * 1900 + b'"}}'] * 500) + b"]}",
    "250,000 [1] and one lone surrogate": b'{"events":[' + _EVENT + b'"\\ud800","props":{"a":['
    + b",".join([b"[1]"] * 250_000) + b"]}}]}",
    "200,000 strings and one lone surrogate": b'{"events":[' + _EVENT + b'"\\ud800","props":{"a":['
    + b",".join([b'"ab"'] * 200_000) + b"]}}]}",
    "100,000 lone surrogates": b'{"events":[' + _EVENT + b'"a","props":{"a":[' + b",".join([b'"\\ud800"'] * 100_000) + b"]}}]}",
    "nested 1,000,000 deep": b'{"events":[' + b"[" * 1_000_000,
    "[1,[1,... 340,000 deep, unclosed": b'{"events":[' + _EVENT + b'"a","props":{"a":' + b"[1," * 340_000,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--number", type=int, default=1000, help="requests per timeit run")
    ap.add_argument("--repeat", type=int, default=7, help="timeit runs; the median is printed")
    ap.add_argument("--bodies", type=int, default=32, help="distinct bodies, rotated")
    ap.add_argument("--hostile", action="store_true", help="time 1 MB hostile bodies instead, one request each")
    ap.add_argument("--pii", choices=("on", "off", "both"), default="on",
                    help="the tenant's PII scrubbing (default rules); both: on and off alternately, and their ratio")
    args = ap.parse_args()
    if args.pii == "both":
        compare_pii(args)
    else:
        run(args, args.pii == "on")


def compare_pii(args: argparse.Namespace) -> None:
    """PII scrubbing on and off, ``--repeat`` rounds of one run each, alternating."""
    on, off = [], []
    for _ in range(args.repeat):
        on.append(run(argparse.Namespace(**{**vars(args), "repeat": 1}), True, quiet=True))
        off.append(run(argparse.Namespace(**{**vars(args), "repeat": 1}), False, quiet=True))
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"PII scrubbing on: {m_on:.1f} us CPU/request, off: {m_off:.1f} us (medians of {args.repeat} alternating runs "
          f"of {args.number} requests of 10 events); on costs {m_on - m_off:+.1f} us, ratio {m_on / m_off:.3f}")


def run(args: argparse.Namespace, pii: bool, quiet: bool = False) -> float:
    """Time the door with the tenant's PII scrubbing ``pii``; returns the median us per request."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = tomllib.loads(TEMPLATE.format(port=8080, write_key="wk_" + "b" * 24, read_key="rk_" + "b" * 24,
                                            admin_key="ak_" + "b" * 24, server_admin_key="sk_" + "b" * 24))
        raw["spool"]["durability"] = "os"
        raw["realtime"] = {"enabled": False}
        raw["tenants"][0]["pii"] = {"enabled": pii}
        settings = config.parse(raw, Path(tmp), environ={})
        writer = spool.SegmentWriter(settings.spool_path, settings.spool)
        metrics = Metrics()
        endpoint = EventsEndpoint(settings, build_router(writer, metrics), metrics, SpoolPressure())
        rng = random.Random(1)
        bodies = [make_batch(rng, int(time.time() * 1000)) for _ in range(args.bodies)]
        headers = {"content-type": "text/plain;charset=UTF-8", "user-agent": UA, "origin": "https://shop.example"}
        query = f"k={raw['tenants'][0]['write_key']}"
        loop = asyncio.new_event_loop()
        state = {"i": 0}
        settings.collector.max_body_bytes = 1 << 20

        def one_any() -> None:  # any 2xx or 4xx; a 5xx would be a bug
            async def read_body(limit: int) -> bytes:
                return bodies[0]

            req = EventRequest("POST", query, headers.get, "203.0.113.9", read_body)
            status, _, answer = loop.run_until_complete(endpoint.handle(req))
            if status >= 500:
                raise SystemExit(f"unexpected {status}: {answer!r}")

        def one() -> None:
            body = bodies[state["i"] % len(bodies)]
            state["i"] += 1

            async def read_body(limit: int) -> bytes:
                return body

            req = EventRequest("POST", query, headers.get, "203.0.113.9", read_body)
            status, _, answer = loop.run_until_complete(endpoint.handle(req))
            if status != 200:
                raise SystemExit(f"unexpected {status}: {answer!r}")

        one()  # warm the user-agent cache and the schema
        if args.hostile:
            for name, hostile in HOSTILE.items():
                bodies[:] = [hostile[: 1 << 20]]
                runs = timeit.repeat(one_any, number=1, repeat=5, timer=time.thread_time)
                print(f"{name}: {len(bodies[0])} bytes, {statistics.median(runs) * 1000:.1f} ms CPU median of 5")
            loop.run_until_complete(writer.seal())
            return 0.0
        runs = timeit.repeat(one, number=args.number, repeat=args.repeat, timer=time.thread_time)
        per = [r / args.number * 1e6 for r in runs]
        size = statistics.mean(len(b) for b in bodies)
        if not quiet:
            print(f"handle(): {statistics.median(per):.1f} us CPU/request median (min {min(per):.1f}, max {max(per):.1f}) "
                  f"over {args.repeat} x {args.number} requests of 10 events, {size:.0f} bytes mean, "
                  f"PII scrubbing {'on' if pii else 'off'}")
        loop.run_until_complete(writer.seal())
        loop.close()
        return statistics.median(per)


if __name__ == "__main__":
    main()
