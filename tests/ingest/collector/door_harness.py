"""``POST /v1/events`` in process: ``EventsEndpoint.handle`` with a real spool writer, no server.

What the endpoint spooled is read back with the readers' own code: lake delivery's
``segment_rows`` and the realtime feed's ``segment_events``, so "accepted" is checked as
"deliverable", not as "answered 200".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa

from beaconlake import config
from beaconlake.ingest import spool
from beaconlake.ingest.collector.events import EventRequest, EventsEndpoint, SpoolPressure
from beaconlake.ingest.rows import segment_rows
from beaconlake.ingest.route import build_router
from beaconlake.lake import segment
from beaconlake.realtime.feed import segment_events
from beaconlake.telemetry import Metrics

WRITE_KEY = "wk_doordoordoordoordoor"
READ_KEY = "rk_doordoordoordoordoor"
PEER = "203.0.113.9"
TEXT = {"content-type": "text/plain;charset=UTF-8"}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return msgspec.json.decode(self.body)


@dataclass
class Spooled:
    rows: list[dict[str, Any]]  # the raw lake rows, every column
    rejected: list[dict[str, Any]]
    raw_tables: list[pa.Table]
    rejected_tables: list[pa.Table]
    feed: list[tuple]  # what the realtime feed reads: (tenant, event)


class Door:
    def __init__(self, folder: Path, tenant: dict | None = None, **sections: dict) -> None:
        sections.setdefault("realtime", {"enabled": False})
        spool_settings = {"min_free_disk_bytes": 0, **sections.pop("spool", {})}
        raw = {
            "tenants": [{"id": "shop", "write_key": WRITE_KEY, "read_key": READ_KEY, **(tenant or {})}],
            "spool": spool_settings,
            **sections,
        }
        self.settings = config.parse(raw, folder, environ={})
        self.writer = spool.SegmentWriter(self.settings.spool_path, self.settings.spool)
        self.metrics = Metrics()
        router = build_router(self.writer, self.metrics)
        self.endpoint = EventsEndpoint(self.settings, router, self.metrics, SpoolPressure())
        self.loop = asyncio.new_event_loop()

    def post(self, body: bytes, headers: dict[str, str] | None = None, query: str | None = None,
             peer: str | None = PEER, method: str = "POST") -> Answer:
        hdrs = {k.lower(): v for k, v in (TEXT if headers is None else headers).items()}

        async def read_body(limit: int) -> bytes:
            return body

        req = EventRequest(method, f"k={WRITE_KEY}" if query is None else query, hdrs.get, peer, read_body)
        status, headers_out, answer = self.loop.run_until_complete(self.endpoint.handle(req))
        return Answer(status, dict(headers_out), answer)

    def spooled(self) -> Spooled:
        """Seal what was spooled, read it as delivery and the realtime feed do, and drop it."""
        self.loop.run_until_complete(self.writer.seal())
        out = Spooled([], [], [], [], [])
        for path in spool.sealed_segments(self.settings.spool_path):
            raw, rejected = segment_rows(path.stem, segment.read(path).frames, 0).tables()
            out.feed.extend(segment_events(path))
            for table in raw.values():
                table.validate(full=True)  # full: every string is checked to be valid UTF-8
                out.raw_tables.append(table)
                out.rows.extend(table.to_pylist())
            for table in rejected.values():
                table.validate(full=True)
                out.rejected_tables.append(table)
                out.rejected.extend(table.to_pylist())
            path.unlink()
        return out

    def counter(self, name: str, **labels: str) -> float:
        if labels:
            return self.metrics.value(name, **labels)
        return sum(self.metrics.counters.get(name, {}).values())

    def close(self) -> None:
        self.loop.run_until_complete(self.writer.seal())
        self.loop.close()


def event(**kw: Any) -> dict:
    base = {"level": "mid", "name": "page_view", "anonymous_id": "anon-1", "client_ts": 1_764_230_000_000}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


def body(*events: Any, sent_at: int = 1_764_230_001_000, **extra: Any) -> bytes:
    return msgspec.json.encode({"sent_at": sent_at, "events": list(events), **extra})
