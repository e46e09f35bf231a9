"""Hand-built raw lake files: events whose sessions are known, written as the lake's deliverer would.

``RawEvents`` builds events for one visitor at a time; ``write_raw`` splits them by (level, UTC
day of event_ts) into ``raw/tenant=T/level=L/year=/month=/day=/<segment>.parquet``, zstd, with
``RAW_SCHEMA`` — the same layout and schema as ``beaconlake.ingest.deliver``.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from beaconlake.types import RAW_SCHEMA

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


def ms(text: str) -> int:
    """Epoch ms of an ISO time, UTC: ms("2026-03-01T10:00:00")."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def event(
    anon: str,
    ts: int,
    name: str = "page_view",
    level: str = "mid",
    *,
    tenant: str = "shop",
    event_id: str | None = None,
    user_id: str | None = None,
    url: str | None = "https://shop.example/",
    referrer: str | None = None,
    props: dict | None = None,
    context: dict | None = None,
    received_at: int | None = None,
    page_view_id: str | None = None,
    is_bot: bool = False,
    segment: str = "seg-0001",
) -> dict:
    ctx = dict(context or {"locale": "en-GB", "tz": "Europe/London"})
    if page_view_id is not None:
        ctx["page_view_id"] = page_view_id
    received = received_at if received_at is not None else ts + 200
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "tenant": tenant,
        "level": level,
        "name": name,
        "anonymous_id": anon,
        "user_id": user_id,
        "session_id": "client-" + anon,
        "client_ts": ts,
        "sent_at": ts + 100,
        "received_at": received,
        "event_ts": ts,
        "url": url,
        "referrer": referrer,
        "title": "A page",
        "props": json.dumps(props) if props is not None else None,
        "context": json.dumps(ctx),
        "ip": "192.0.2.0",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "ua_browser": "Firefox",
        "ua_browser_version": "133.0",
        "ua_os": "Linux",
        "ua_os_version": None,
        "ua_device": "Other",
        "is_bot": is_bot,
        "segment": segment,
    }


def write_raw(lake: Path, events: list[dict], segment: str = "seg-0001") -> list[Path]:
    """Write ``events`` into the raw lake as files named after ``segment``; returns the paths."""
    parts: dict[tuple, list[dict]] = defaultdict(list)
    for e in events:
        day = datetime.fromtimestamp(e["event_ts"] / 1000, UTC)
        parts[(e["tenant"], e["level"], day.year, day.month, day.day)].append({**e, "segment": segment})
    paths = []
    for (tenant, level, y, m, d), rows in sorted(parts.items()):
        path = lake / f"raw/tenant={tenant}/level={level}/year={y:04d}/month={m:02d}/day={d:02d}/{segment}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(rows, schema=RAW_SCHEMA)
        pq.write_table(table, path, compression="zstd")
        paths.append(path)
    return paths
