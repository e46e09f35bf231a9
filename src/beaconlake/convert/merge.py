"""SQL of the incremental path (increment.py), in the dialect both engines run.

``affected``  the anonymous ids whose rows can change: those of the new raw rows, and those of
              committed events that share an event id with them (a copy under another id)
``hist_ev``   the affected people's committed events rows (read from their buckets and the days'
              appended files)
``raw``       the batch's raw rows: the new files' plus the affected people's committed events turned
              back into raw rows, which is lossless (the events table keeps every raw column)
"""

from __future__ import annotations

import pyarrow as pa

from beaconlake.backends.engine.base import Dialect
from beaconlake.types import RAW_SCHEMA

# raw column -> the events table column it is kept in, when the name differs
EVENT_COLUMN_OF = {"session_id": "client_session_id"}
TIMESTAMPS = ("client_ts", "sent_at", "received_at", "event_ts")


def is_affected(alias: str) -> str:
    return f"EXISTS (SELECT 1 FROM affected a WHERE a.anonymous_id = {alias}.anonymous_id)"


def affected_sql(with_owners: bool) -> str:
    owners = """
UNION
SELECT e.anonymous_id FROM ev_ids e JOIN (SELECT DISTINCT event_id FROM new_raw) n ON n.event_id = e.event_id""" if with_owners else ""
    return f"SELECT DISTINCT anonymous_id FROM new_raw{owners}"


def history_raw_sql(d: Dialect) -> str:
    """The affected people's committed events as raw rows, with their ``_row_key``."""
    cols = []
    for name in RAW_SCHEMA.names:
        source = f"h.{EVENT_COLUMN_OF.get(name, name)}"
        cols.append(f"{d.epoch_ms(source) if name in TIMESTAMPS else source} AS {name}")
    return f"SELECT {', '.join(cols)}, h._row_key FROM hist_ev h WHERE {is_affected('h')}"


def raw_sql() -> str:
    names = ", ".join([*RAW_SCHEMA.names, "_row_key"])
    return f"SELECT {names} FROM new_raw UNION ALL SELECT {names} FROM hist_raw"


def columns(schema: pa.Schema, produced: set[str] | None, alias: str) -> str:
    """``schema``'s columns from ``alias``, in table order; a column the query does not produce
    (a promoted column no tenant declares any more) is NULL."""
    out = []
    for f in schema:
        if produced is None or f.name in produced:
            out.append(f"{alias}.{f.name}")
        else:
            out.append(f"CAST(NULL AS {_sql_type(f.type)}) AS {f.name}")
    return ", ".join(out)


def _sql_type(t: pa.DataType) -> str:
    simple = {pa.string(): "STRING", pa.int64(): "BIGINT", pa.int32(): "INT", pa.float64(): "DOUBLE",
              pa.bool_(): "BOOLEAN", pa.date32(): "DATE"}
    if t in simple:
        return simple[t]
    raise TypeError(f"a promoted column of type {t} cannot be spelled NULL in shared SQL")


def kept_rows_sql(schema: pa.Schema, existing: str) -> str:
    """Committed rows of the files being replaced that belong to people not affected: copied as they are."""
    return f"SELECT {columns(schema, None, 'e')} FROM {existing} e WHERE NOT {is_affected('e')}"


def changed_people_sql(schema: pa.Schema, produced: set[str], day_filter: str, out_sql: str) -> str:
    """The affected people with a committed row on a day that the recomputation does not give back
    unchanged (none: their new events only extend what is there, and can be appended)."""
    return f"""
SELECT DISTINCT anonymous_id FROM (
  SELECT {columns(schema, None, 'h')} FROM hist_ev h WHERE {is_affected('h')} AND {day_filter}
  EXCEPT
  SELECT {columns(schema, produced, 'x')} FROM ({out_sql}) x
) y
"""


def appended_rows_sql(schema: pa.Schema, produced: set[str], day_filter: str, out_sql: str, rewritten) -> str:
    """The recomputed rows of a day that are not committed yet, of the people outside the buckets
    being rewritten (``rewritten(alias)``: a condition, or '' when none are)."""
    x_outside = f" WHERE NOT ({rewritten('x')})" if rewritten else ""
    h_outside = f" AND NOT ({rewritten('h')})" if rewritten else ""
    return f"""
SELECT * FROM (
  SELECT {columns(schema, produced, 'x')} FROM ({out_sql}) x{x_outside}
  EXCEPT
  SELECT {columns(schema, None, 'h')} FROM hist_ev h WHERE {is_affected('h')} AND {day_filter}{h_outside}
) a
"""
