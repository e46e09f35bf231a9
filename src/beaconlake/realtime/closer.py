"""Closed windows go to the lake: ``stats/tenant=T/grain=G/year=/month=/day=/<from>.parquet``
(``lake/layout.py``).

Runs in one process, so one writer: the deliverer (``realtime.sequences_from = "spool"``, its
marker ``closed.json`` in the node's ``data_dir``) or the lake detector on the active jobs node
(``"lake"``, its marker in the coordination store, written fenced by the detector's lease).
A minute window is closed once no process can still add to it: ``allowed_lateness_secs`` after its end, plus a margin for the
memory backend's partials to be published. When the minutes of an hour (a day) are all
closed, the hour's (day's) row is written too; ``<from>`` is the first window start the
file covers, so a pass repeated after a crash rewrites the same file.
"""

from __future__ import annotations

import io
import json
import logging
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from beaconlake.backends.counters import Counters
from beaconlake.backends.counters.windows import GRAINS, MINUTE_MS
from beaconlake.backends.storage import Storage
from beaconlake.lake import layout
from beaconlake.units import day_of

log = logging.getLogger(__name__)

STATS_SCHEMA = pa.schema(
    [
        pa.field("tenant", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("grain", pa.string(), nullable=False),
        pa.field("window_start", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("path", pa.string()),  # null: every path (the event name's total)
        pa.field("count", pa.int64(), nullable=False),
        pa.field("distinct_anonymous_ids", pa.int64(), nullable=False),
        pa.field("props", pa.string(), nullable=False),  # {"prop": {count,sum,min,max,mean,stddev}} JSON
    ]
)


class Marker(Protocol):
    """Where the closer keeps ``until``: window starts below it are written."""

    def load(self) -> int | None: ...

    def save(self, until: int) -> None: ...


class FileMarker:
    """The marker of one node: a JSON file, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> int | None:
        try:
            return int(json.loads(self.path.read_text())["until"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, until: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"until": until}))
        tmp.replace(self.path)


class WindowCloser:
    def __init__(self, counters: Counters, storage: Storage, state_path: Path | None, lateness_ms: int, margin_ms: int,
                 retention_ms: int, marker: Marker | None = None) -> None:
        self.counters = counters
        self.storage = storage
        if marker is None:
            if state_path is None:
                raise ValueError("WindowCloser needs a state_path or a marker")
            marker = FileMarker(state_path)
        self.marker = marker
        self.delay_ms = lateness_ms + margin_ms
        self.retention_ms = retention_ms

    def closed_until(self, now_ms: int) -> int:
        """Window starts below this are closed."""
        last_end = now_ms - self.delay_ms
        return last_end - last_end % MINUTE_MS

    def run(self, now_ms: int) -> int:
        """Write the windows closed since the last run; return the rows written."""
        until = self.closed_until(now_ms)
        since = self.marker.load()
        if since is None:
            since = until - self.retention_ms
        if until <= since:
            return 0
        rows: dict[tuple[str, str, date], list[dict]] = defaultdict(list)
        for tenant, name in sorted(self.counters.series(since - GRAINS["day"], until)):
            for grain, size in GRAINS.items():
                # buckets [b, b + size) whose end came into (since, until]: b in (since - size, until - size]
                first = since - size + 1
                first += -first % size
                last = until - size
                if first > last:
                    continue
                for grouped in (False, True):
                    for r in self.counters.query(tenant, name, first, last + size, grain, grouped):
                        if not first <= r["start"] <= last:
                            continue
                        rows[(tenant, grain, date(*day_of(r["start"])))].append(
                            {"tenant": tenant, "name": name, "grain": grain, "window_start": r["start"],
                             "path": r["path"], "count": r["count"],
                             "distinct_anonymous_ids": r["distinct_anonymous_ids"], "props": json.dumps(r["props"])})
        written = 0
        for (tenant, grain, day), part in sorted(rows.items()):
            buf = io.BytesIO()
            pq.write_table(pa.Table.from_pylist(part, schema=STATS_SCHEMA), buf, compression="zstd")
            self.storage.put(layout.stats_key(tenant, grain, day, since), buf.getvalue())
            written += len(part)
        self.marker.save(until)
        return written
