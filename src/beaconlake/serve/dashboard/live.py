"""The Live view: the last hour, read from the raw lake's newest files.

The Iceberg tables lag by up to ``convert_interval_mins``; the raw lake lags by a spool flush
(seconds), so "now" is read there: only the files written in the last ``WINDOW_MINS`` + a margin
(by modification time), of today's and, near midnight, yesterday's partitions. The files are
listed and read through the storage seam, so the view works on every storage backend: listed
with ``list_info``, read by DuckDB in place when the storage has local paths (its fastest
reader), else through the storage's pyarrow filesystem.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pyarrow.dataset as ds

from beaconlake.backends.storage import Storage
from beaconlake.lake import layout
from beaconlake.types import LEVELS, RAW_SCHEMA, REJECTED_SCHEMA
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


def _read(con: duckdb.DuckDBPyConnection, storage: Storage, keys: list[str], schema: Any, columns: list[str],
          column: str, low: int, high: int) -> Any:
    """``columns`` of the rows of ``keys`` whose ``column`` is in [low, high], as an Arrow table."""
    if storage.capabilities.local_paths:  # DuckDB reads local files faster than a dataset does
        return con.sql(f"SELECT {', '.join(columns)} FROM read_parquet(?) WHERE {column} BETWEEN ? AND ?",
                       params=[storage.scan_paths(keys, Path()), low, high]).to_arrow_table()
    fs, root = storage.arrow_filesystem()
    # the schema is known (delivery writes it): no remote file is opened just to infer it
    dataset = ds.FileSystemDataset.from_paths([f"{root}/{key}" for key in keys], schema=schema,
                                              format=ds.ParquetFileFormat(), filesystem=fs)
    field = pc.field(column)
    return dataset.to_table(columns=columns, filter=(field >= low) & (field <= high))


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
            con.register("recent", _read(con, storage, raw, RAW_SCHEMA, ["level", "name", "anonymous_id", "event_ts", "url"],
                                         "event_ts", start, now + 60_000))
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
            con.register("rejected", _read(con, storage, rejected, REJECTED_SCHEMA, ["reason", "received_at"],
                                           "received_at", day_ago, 2**63 - 1))
            rows = con.execute("SELECT reason AS key, count(*) AS events FROM rejected GROUP BY 1 ORDER BY 2 DESC").fetchall()
            out["rejected"] = [{"key": k, "events": n} for k, n in rows]
    finally:
        con.close()
    return out
