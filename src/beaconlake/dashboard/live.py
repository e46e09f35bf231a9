"""The Live view: the last hour, read from the raw lake's newest files.

The Iceberg tables lag by up to ``convert_interval_mins``; the raw lake lags by a spool flush
(seconds), so "now" is read there: only the files written in the last ``WINDOW_MINS`` + a margin
(by modification time), of today's and, near midnight, yesterday's partitions. The files are
listed and read through the storage seam (``list_info``, ``arrow_filesystem``), so the view
works on every storage backend, local or remote.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb
import pyarrow.compute as pc
import pyarrow.dataset as ds

from beaconlake.backends.storage import Storage
from beaconlake.lake import layout
from beaconlake.types import LEVELS
from beaconlake.units import DAY_MS, day_of, now_ms

WINDOW_MINS = 60
ACTIVE_MINS = 5
# A file holds events of a few flush intervals before its delivery; late ones are rare and small.
MARGIN_MINS = 10


def _days(since_ms: int, now: int) -> list[date]:
    return list(dict.fromkeys(date(*day_of(ms)) for ms in (since_ms, now)))


def recent_keys(storage: Storage, prefixes: list[str], since_ms: int) -> list[str]:
    """Parquet objects under ``prefixes`` modified since ``since_ms``."""
    return [info.key for prefix in prefixes for info in storage.list_info(prefix)
            if info.key.endswith(layout.PARQUET) and info.mtime_ms >= since_ms]


def _read(storage: Storage, keys: list[str], columns: list[str], where: Any) -> Any:
    fs, root = storage.arrow_filesystem()
    return ds.dataset([f"{root}/{key}" for key in keys], filesystem=fs, format="parquet").to_table(
        columns=columns, filter=where)


def live(storage: Storage, tenant: str, high_level_counts: Any) -> dict[str, Any]:
    now = now_ms()
    start = now - WINDOW_MINS * 60_000
    start = start - start % 60_000
    out: dict[str, Any] = {"now": now, "from": start, "minutes": [], "active_people": 0, "pages": [], "names": [],
                           "rejected": [], "high_level": {}, "high_level_24h": {}}
    if high_level_counts is not None:
        out["high_level"] = high_level_counts(tenant, None, start, now)
        out["high_level_24h"] = high_level_counts(tenant, None, now - DAY_MS, now)
    since = start - MARGIN_MINS * 60_000
    raw = recent_keys(storage, [layout.raw_prefix(tenant, level, day) for level in LEVELS for day in _days(since, now)],
                      since)
    con = duckdb.connect()
    try:
        if raw:
            ts = pc.field("event_ts")
            recent = _read(storage, raw, ["level", "name", "anonymous_id", "event_ts", "url"],
                           (ts >= start) & (ts <= now + 60_000))
            con.register("recent", recent)
            q = lambda sql, *a: [dict(zip([d[0] for d in r.description], row, strict=True)) for r in [con.execute(sql, list(a))] for row in r.fetchall()]
            out["minutes"] = q("SELECT event_ts - event_ts % 60000 AS start, level, count(*) AS events FROM recent GROUP BY 1, 2 ORDER BY 1, 2")
            out["active_people"] = q("SELECT count(DISTINCT anonymous_id) AS n FROM recent WHERE event_ts >= ?", now - ACTIVE_MINS * 60_000)[0]["n"]
            out["people_last_hour"] = q("SELECT count(DISTINCT anonymous_id) AS n FROM recent")[0]["n"]
            out["pages"] = q("SELECT coalesce(nullif(regexp_extract(url, '^[a-zA-Z]+://[^/]+(/[^?#]*)', 1), ''), '/') AS key, "
                             "count(*) AS views, count(DISTINCT anonymous_id) AS people FROM recent WHERE name = 'page_view' "
                             "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10")
            out["names"] = q("SELECT name AS key, level, count(*) AS events FROM recent GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 15")
        day_ago = now - DAY_MS
        rejected = recent_keys(storage, [layout.rejected_prefix(tenant, day) for day in _days(day_ago, now)], day_ago)
        if rejected:
            con.register("rejected", _read(storage, rejected, ["reason", "received_at"], pc.field("received_at") >= day_ago))
            rows = con.execute("SELECT reason AS key, count(*) AS events FROM rejected GROUP BY 1 ORDER BY 2 DESC").fetchall()
            out["rejected"] = [{"key": k, "events": n} for k, n in rows]
    finally:
        con.close()
    return out
