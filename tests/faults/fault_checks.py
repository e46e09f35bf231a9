"""What every fault test checks afterwards: the invariant, the recovery, and ``/metrics``.

* **The invariant.** Every acknowledged event is in the raw lake exactly once (in the Iceberg
  ``events`` table exactly once, where convert is involved); nothing is there that no client
  sent. Events a test destroyed on purpose (the frames of a segment it corrupted, the rows of a
  raw file it damaged) are named by the test and must be absent, not silently kept.
* **Recovery without an operator.** ``/readyz`` answers 200 on every worker, a new batch is
  acknowledged, and the delivery lag is back to a few flush intervals.
* **``/metrics`` tells the truth** about the fault: read through ``Metrics`` below.
"""

from __future__ import annotations

import collections
import re
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
import pyarrow.dataset as ds

from loadgen import Ledger

SERVER_ADMIN_KEY = "sk_faultsfaultsfaultsfaults"  # server.admin_key of the fault tests' collectors
_SAMPLE = re.compile(r"^(beaconlake_\w+?)(?:\{([^}]*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


class Metrics:
    """One scrape of ``/metrics``."""

    def __init__(self, url: str) -> None:
        r = httpx.get(f"{url}/metrics", timeout=10)
        assert r.status_code == 200, (r.status_code, r.text[:300])
        self.text = r.text
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for line in r.text.splitlines():
            m = _SAMPLE.match(line)
            if m:
                self.samples.append((m[1], dict(_LABEL.findall(m[2] or "")), float(m[3])))

    def __call__(self, name: str, **labels: str) -> float:
        """The sum of the series of ``name`` whose labels include ``labels``."""
        return sum(v for n, ls, v in self.samples if n == name and labels.items() <= ls.items())


def wait_until(check: Callable[[], object], timeout: float, what: str, every: float = 0.2) -> object:
    """Poll ``check`` until it returns something true; fail with ``what`` and its last value."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")


def lake_ids(data_dir: Path, area: str = "raw") -> collections.Counter[str]:
    """event_id -> rows in the raw lake (every tenant, level and day)."""
    root = Path(data_dir) / "lake" / area
    files = sorted(str(p) for p in root.rglob("*.parquet")) if root.is_dir() else []
    if not files:
        return collections.Counter()
    table = ds.dataset(files, format="parquet").to_table(columns=["event_id"])
    return collections.Counter(table.column("event_id").to_pylist())


def table_ids(config_path: Path, table: str = "events") -> collections.Counter[str]:
    """event_id -> rows in an Iceberg table, read as ``beaconlake query`` reads it."""
    from beaconlake.convert.cli import load
    from beaconlake.convert.query import run_query
    from beaconlake.convert.run import open_store

    settings, sections = load(str(config_path))
    rows = run_query(open_store(settings, sections), f"SELECT event_id FROM {table}", settings.data_dir)
    return collections.Counter(rows.column("event_id").to_pylist())


def assert_exactly_once(acked: Iterable[str], found: collections.Counter[str], *, ledger: Ledger | None = None,
                        destroyed: Iterable[str] = (), where: str = "the raw lake") -> None:
    """Every acknowledged id once in ``found``; none of ``destroyed``; nothing ``ledger`` did
    not send (ids of other sources, e.g. a probe's, are the caller's to filter)."""
    acked = set(acked)
    destroyed = set(destroyed)
    assert acked, "the load got no acknowledgement: the test proves nothing"
    missing = acked - destroyed - found.keys()
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged events are not in {where}, e.g. {sorted(missing)[:3]}"
    twice = {i: n for i, n in found.items() if n > 1}
    assert not twice, f"{len(twice)} events are in {where} more than once, e.g. {list(twice.items())[:3]}"
    kept = destroyed & found.keys()
    assert not kept, f"{len(kept)} events of destroyed data are in {where}, e.g. {sorted(kept)[:3]}"
    if ledger is not None:
        strangers = [i for i in found if ledger.number(i) is None]
        assert not strangers, f"{len(strangers)} rows in {where} that no client sent, e.g. {strangers[:3]}"


def post_probe(url: str, write_key: str, level: str = "mid", name: str = "page_view", timeout: float = 10.0,
               **fields: object) -> str:
    """One event, acknowledged or the test fails; returns its id."""
    event_id = str(uuid.uuid4())
    now = int(time.time() * 1000)
    event = {"event_id": event_id, "level": level, "name": name, "anonymous_id": "probe", "client_ts": now, **fields}
    r = httpx.post(f"{url}/v1/events?k={write_key}", json={"sent_at": now, "events": [event]}, timeout=timeout)
    assert r.status_code == 200 and r.json()["accepted"] == 1, (r.status_code, r.text[:300])
    return event_id


def assert_recovered(url: str, write_key: str, *, max_lag_secs: float = 5.0, timeout: float = 30.0) -> str:
    """The service is healthy again by itself: ready on every worker, acknowledging, and
    delivering. Returns the id of the probe event it acknowledged."""
    def ready() -> bool:  # several in a row, on fresh connections: every worker answers
        return all(httpx.get(f"{url}/readyz", timeout=5, headers={"connection": "close"}).status_code == 200
                   for _ in range(6))

    wait_until(ready, timeout, "/readyz 200 on every worker")
    probe = post_probe(url, write_key)
    wait_until(lambda: Metrics(url)("beaconlake_delivery_lag_seconds") <= max_lag_secs, timeout,
               f"delivery lag back under {max_lag_secs}s")
    return probe


def pipeline(url: str, key: str) -> dict:
    """The dashboard's Pipeline view, as the key's holder sees it."""
    r = httpx.get(f"{url}/v1/dashboard/pipeline", headers={"authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.json()


def request_run(url: str, admin_key: str) -> None:
    """Ask the scheduler for a convert + analyze run, as the dashboard's *Run now* does."""
    r = httpx.post(f"{url}/v1/dashboard/pipeline/run", headers={"authorization": f"Bearer {admin_key}"}, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text[:300])


def wait_run(url: str, key: str, after: set[str], timeout: float = 90.0) -> dict:
    """The first run not in ``after`` (run ids) once it has finished; returns its record."""
    def finished() -> dict | None:
        runs = [r for r in pipeline(url, key)["runs"] if r["run_id"] not in after]
        return next((r for r in runs if r["status"] != "running"), None)

    return wait_until(finished, timeout, "a requested convert + analyze run to finish", every=0.5)
