"""The Live view: the last hour, read from the raw lake's newest files.

The Iceberg tables lag by up to ``convert_interval_mins``; the raw lake lags by a spool flush
(seconds), so "now" is read there: only the files written in the last ``WINDOW_MINS`` + a margin
(by modification time), of today's and, near midnight, yesterday's partitions. Local storage only:
with S3 storage the view says so and shows the realtime counters' figures alone.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from beaconlake.config import LocalStorageSettings, Settings

WINDOW_MINS = 60
ACTIVE_MINS = 5
# A file holds events of a few flush intervals before its delivery; late ones are rare and small.
MARGIN_MINS = 10


def _days(since_ms: int, now_ms: int) -> list[str]:
    out: list[str] = []
    for ms in (since_ms, now_ms):
        d = datetime.fromtimestamp(ms / 1000, UTC)
        part = f"year={d.year:04d}/month={d.month:02d}/day={d.day:02d}"
        if part not in out:
            out.append(part)
    return out


def recent_files(tenant_root: Path, since_ms: int, now_ms: int, by_level: bool) -> list[str]:
    """Parquet files under ``tenant_root`` (``[level=L/]year=/month=/day=``) modified since ``since_ms``."""
    try:
        bases = [e.path for e in os.scandir(tenant_root) if e.is_dir()] if by_level else [str(tenant_root)]
    except FileNotFoundError:
        return []
    out = []
    for base in bases:
        for part in _days(since_ms, now_ms):
            try:
                with os.scandir(os.path.join(base, part)) as it:
                    out += [e.path for e in it if e.name.endswith(".parquet") and e.stat().st_mtime * 1000 >= since_ms]
            except FileNotFoundError:
                continue
    return out


def live(settings: Settings, tenant: str, high_level_counts: Any) -> dict[str, Any]:
    now = time.time_ns() // 1_000_000
    start = now - WINDOW_MINS * 60_000
    start = start - start % 60_000
    out: dict[str, Any] = {"now": now, "from": start, "minutes": [], "active_people": 0, "pages": [], "names": [],
                           "rejected": [], "high_level": {}, "high_level_24h": {}}
    if high_level_counts is not None:
        out["high_level"] = high_level_counts(tenant, None, start, now)
        out["high_level_24h"] = high_level_counts(tenant, None, now - 86_400_000, now)
    if not isinstance(settings.storage, LocalStorageSettings):
        out["note"] = "the live view reads the raw lake's newest files, which needs local storage"
        return out
    lake = Path(settings.storage.root)
    since = start - MARGIN_MINS * 60_000
    raw = recent_files(lake / "raw" / f"tenant={tenant}", since, now, by_level=True)
    con = duckdb.connect()
    try:
        if raw:
            recent = con.sql("SELECT level, name, anonymous_id, event_ts, url FROM read_parquet(?) "
                             "WHERE event_ts >= ? AND event_ts <= ?", params=[raw, start, now + 60_000]).to_arrow_table()
            con.register("recent", recent)
            q = lambda sql, *a: [dict(zip([d[0] for d in r.description], row, strict=True)) for r in [con.execute(sql, list(a))] for row in r.fetchall()]
            out["minutes"] = q("SELECT event_ts - event_ts % 60000 AS start, level, count(*) AS events FROM recent GROUP BY 1, 2 ORDER BY 1, 2")
            out["active_people"] = q("SELECT count(DISTINCT anonymous_id) AS n FROM recent WHERE event_ts >= ?", now - ACTIVE_MINS * 60_000)[0]["n"]
            out["people_last_hour"] = q("SELECT count(DISTINCT anonymous_id) AS n FROM recent")[0]["n"]
            out["pages"] = q("SELECT coalesce(nullif(regexp_extract(url, '^[a-zA-Z]+://[^/]+(/[^?#]*)', 1), ''), '/') AS key, "
                             "count(*) AS views, count(DISTINCT anonymous_id) AS people FROM recent WHERE name = 'page_view' "
                             "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10")
            out["names"] = q("SELECT name AS key, level, count(*) AS events FROM recent GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 15")
        rejected = recent_files(lake / "rejected" / f"tenant={tenant}", now - 86_400_000, now, by_level=False)
        if rejected:
            rows = con.execute("SELECT reason AS key, count(*) AS events FROM read_parquet(?) WHERE received_at >= ? "
                               "GROUP BY 1 ORDER BY 2 DESC", [rejected, now - 86_400_000]).fetchall()
            out["rejected"] = [{"key": k, "events": n} for k, n in rows]
    finally:
        con.close()
    return out
