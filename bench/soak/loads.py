"""The soak's load: processes running the fault suite's load generator (``tests/faults/loadgen.py``,
its hand-written HTTP transport), and the accounting of what they were told against the lake.

Each load process keeps a ledger (a byte per event id it sent: acknowledged or not) and sends
it back when it stops. Ids carry the process's random prefix and a sequence number, so the
lake is checked against millions of acknowledgements with a counter per id, not a set of strings.
"""

from __future__ import annotations

import io
import multiprocessing
import sys
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for helper in (REPO / "tests", REPO / "tests" / "faults"):  # a spawned load process starts here
    if str(helper) not in sys.path:
        sys.path.insert(0, str(helper))

from loadgen import ACKED, Load  # noqa: E402


@dataclass
class Result:
    prefix: str
    state: bytes  # the ledger: ACKED or SENT for each id number
    statuses: dict
    latencies: array  # seconds of each acknowledged request
    seconds: float

    @property
    def acked_requests(self) -> int:
        return len(self.latencies)


def _run(url: str, key: str, connections: int, rate: float | None, seconds: float, out) -> None:
    load = Load(url, key, connections=connections, rate=rate, fresh_share=0.1, transport="raw", timeout_secs=10)
    started = time.monotonic()
    load.start()
    time.sleep(seconds)
    load.stop()
    out.put(Result(load.ledger.prefix, bytes(load.ledger.state), dict(load.statuses), load.latencies,
                   time.monotonic() - started))


class LoadProcesses:
    """``processes`` load processes sharing ``connections`` and ``rate`` (None: as fast as they go)."""

    def __init__(self, url: str, key: str, processes: int, connections: int, rate: float | None, seconds: float):
        ctx = multiprocessing.get_context("spawn")
        self.queue = ctx.Queue()
        self.procs = [ctx.Process(target=_run, args=(url, key, max(1, connections // processes),
                                                       None if rate is None else rate / processes, seconds, self.queue),
                                  name=f"soak-load-{i}") for i in range(processes)]
        for p in self.procs:
            p.start()

    def results(self, timeout: float) -> list[Result]:
        out = [self.queue.get(timeout=timeout) for _ in self.procs]
        for p in self.procs:
            p.join(30)
        return out


@dataclass
class Accounting:
    acknowledged: int = 0
    delivered: int = 0  # acknowledged and in the lake
    lost: int = 0  # acknowledged, not in the lake, not destroyed on purpose
    duplicated: int = 0  # of our ids, in the lake more than once
    destroyed: int = 0  # acknowledged, in frames the soak corrupted on purpose (parked, reported)
    unacknowledged_delivered: int = 0  # no 2xx (a timeout, a reset), yet in the lake: the client would resend
    strangers: int = 0  # rows no load process sent (probes)
    lost_examples: list[str] = field(default_factory=list)


def account(results: list[Result], lake_ids, destroyed: set[str]) -> Accounting:
    """``lake_ids``: an iterable of event id lists (one per file or batch of the lake)."""
    by_prefix = {r.prefix: (r, array("H", bytes(2 * len(r.state)))) for r in results}
    acc = Accounting()
    plen = len(next(iter(by_prefix)))
    for ids in lake_ids:
        for event_id in ids:
            hit = by_prefix.get(event_id[:plen])
            if hit is None:
                acc.strangers += 1
                continue
            n = int(event_id[plen:], 16)
            counts = hit[1]
            counts[n] = min(counts[n] + 1, 65535)
    for r, counts in by_prefix.values():
        for n, state in enumerate(r.state):
            seen = counts[n]
            if seen > 1:
                acc.duplicated += 1
            if state == ACKED:
                acc.acknowledged += 1
                if seen:
                    acc.delivered += 1
                elif f"{r.prefix}{n:012x}" in destroyed:
                    acc.destroyed += 1
                else:
                    acc.lost += 1
                    if len(acc.lost_examples) < 5:
                        acc.lost_examples.append(f"{r.prefix}{n:012x}")
            elif seen:
                acc.unacknowledged_delivered += 1
    return acc


def local_lake_ids(data_dir: Path):
    import pyarrow.parquet as pq

    for path in sorted((data_dir / "lake" / "raw").rglob("*.parquet")):
        yield pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist()


def storage_lake_ids(storage):
    import pyarrow.parquet as pq

    for key in storage.list("raw/"):
        yield pq.read_table(io.BytesIO(storage.get(key)), columns=["event_id"]).column("event_id").to_pylist()
