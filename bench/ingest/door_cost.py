"""What the collector's door costs per request: ``EventsEndpoint.handle`` in process, no server.

The bodies are the ingest benchmark's (``workload.make_batch``: 10 tracker-like events, about
2.3 KB, one add-to-cart checked against the starter config's JSON Schema). The spool is a real
segment writer with ``durability = "os"``, so fsync latency does not hide the CPU cost. Timed
in CPU time of the thread that runs the requests (``time.thread_time``), which a machine shared
with other work disturbs much less than wall time. Prints the median and the minimum of
``--repeat`` timeit runs, microseconds per request.

    python bench/ingest/door_cost.py            # about 10 s
    python bench/ingest/door_cost.py --number 2000 --repeat 9
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--number", type=int, default=1000, help="requests per timeit run")
    ap.add_argument("--repeat", type=int, default=7, help="timeit runs; the median is printed")
    ap.add_argument("--bodies", type=int, default=32, help="distinct bodies, rotated")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        raw = tomllib.loads(TEMPLATE.format(port=8080, write_key="wk_" + "b" * 24, read_key="rk_" + "b" * 24))
        raw["spool"]["durability"] = "os"
        raw["realtime"] = {"enabled": False}
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
        runs = timeit.repeat(one, number=args.number, repeat=args.repeat, timer=time.thread_time)
        per = [r / args.number * 1e6 for r in runs]
        size = statistics.mean(len(b) for b in bodies)
        print(f"handle(): {statistics.median(per):.1f} us CPU/request median (min {min(per):.1f}, max {max(per):.1f}) "
              f"over {args.repeat} x {args.number} requests of 10 events, {size:.0f} bytes mean")
        loop.run_until_complete(writer.seal())
        loop.close()


if __name__ == "__main__":
    main()
