"""Dedupe and sessionize one batch of one tenant's raw events, in SQL both engines run.

The rules (docs/convert.md):

* An event is kept once per ``event_id`` (the tenant is fixed per batch): the copy received
  first; ties fall to the segment name and then the event's own fields, so the choice is the
  same on every engine and every run.
* Per anonymous id, events in ``(event_ts, event_id)`` order form a *chain* while each follows
  the previous one by at most ``session_gap_mins``. A chain is one session unless it runs
  longer than ``max_session_hours``: then it is cut every ``max_session_hours`` from the chain's
  first event, and the pieces are sessions flagged ``split``.
* A session's id is ``md5(tenant/anonymous_id/chain start ms/piece)``: the same events give the
  same id on any engine and in any later run.

Two window passes do it (the shape of the bare LAG + running SUM sessionization query the
benchmark compares with): the first finds each event's gap to the previous one, the second
carries the start of the current chain forward.

The result, ``ev``, is deliberately thin: what sessions and page views need, plus ``_row_key``
(file and row of the raw event). The wide columns are never carried through the sorts; the
events table is written by joining each day's raw rows back on ``_row_key``. Only the visitors
seen on the batch's own days are read from the context days around them.
"""

from __future__ import annotations

from dataclasses import dataclass

from beaconlake.backends.engine.base import Dialect

# Events whose page view matters for the pageviews table (their page_view_id is read from context).
# The views a batch's sessionizing creates (dropped after each batch, by the whole-day and the
# incremental path alike).
BATCH_VIEWS = ("batch_anons", "dups", "sess0", "pv", "sess", "stored_sessions")
PAGE_EVENTS = ("page_view", "page_leave", "scroll", "click", "rage_click", "touch", "link_click", "form_submit",
               "page_ping")  # page_ping: Snowplow's activity heartbeat (docs/protocols.md)
# Ordering of duplicate copies: first received wins; the rest make the choice total.
DUP_ORDER = "received_at, segment, event_ts, client_ts, level, name, anonymous_id, props NULLS FIRST, url NULLS FIRST"


@dataclass(frozen=True)
class Bounds:
    """One batch: rows of days in [r0, r1) are rewritten; events in [c0, c1) are read as context."""

    tenant: str
    r0: int
    r1: int
    c0: int
    c1: int
    gap_ms: int
    max_ms: int

    @property
    def in_context(self) -> str:
        return f"event_ts >= {self.c0} AND event_ts < {self.c1}"


def in_context(b: Bounds, r: str = "r") -> str:
    return f"{r}.event_ts >= {b.c0} AND {r}.event_ts < {b.c1}"


def in_days(b: Bounds, r: str = "r") -> str:
    return f"{r}.event_ts >= {b.r0} AND {r}.event_ts < {b.r1}"


def batch_rows(b: Bounds, columns: str) -> str:
    """Raw rows that matter to the batch: those of its own days, and context rows of the
    anonymous ids seen on them (``batch_anons``); other visitors' sessions never touch the batch."""
    return f"""
  SELECT {columns} FROM raw r WHERE {in_days(b)}
  UNION ALL
  SELECT {columns} FROM raw r JOIN batch_anons a ON a.anonymous_id = r.anonymous_id
  WHERE {in_context(b)} AND NOT ({in_days(b)})"""


def batch_anons_sql(b: Bounds) -> str:
    return f"SELECT DISTINCT anonymous_id FROM raw r WHERE {in_days(b)}"


def dups_sql(b: Bounds, d: Dialect) -> str:
    """Hashes of event ids seen more than once (usually few): only their rows go through the exact
    dedupe; a hash collision just sends a few more rows through it."""
    return f"""
SELECT h FROM ({batch_rows(b, d.hash64('r.event_id') + ' AS h')}
) x GROUP BY h HAVING count(*) > 1
"""


def session_id_sql(tenant: str, anonymous_id: str, chain_start: str, chunk: str) -> str:
    esc = tenant.replace("'", "''")
    return f"md5(concat_ws('/', '{esc}', {anonymous_id}, CAST({chain_start} AS STRING), CAST({chunk} AS STRING)))"


COLUMNS = ("_row_key", "event_id", "anonymous_id", "event_ts", "name", "level", "is_bot", "ua_device", "ua_browser",
           "ua_os", "url", "title", "referrer", "props", "context")


# What the exact dedupe orders by, besides slim's own columns: kept for the rows that may be
# duplicates only (NULL elsewhere, so they cost next to nothing).
DUP_COLUMNS = ("received_at", "segment", "client_ts", "props", "url")


def slim_sql(b: Bounds, d: Dialect) -> str:
    """The batch's events with what sessions and page views need of them (``slim``), in one scan
    of the raw rows. Rows whose event id hash is in ``dups`` are flagged (``maybe_dup``) and keep
    what the exact dedupe orders by; ``dropped`` then names the copies that lose.
    JSON is read here once: the page view id of page events, the page view's locale, time zone
    and country, page_leave's engaged time, and scroll depths."""
    page_events = ", ".join(f"'{n}'" for n in PAGE_EVENTS)
    only_pv = "CASE WHEN r.name = 'page_view' THEN {} END".format
    cols = ", ".join("r." + c for c in COLUMNS)
    dup_cols = ", ".join("r." + c for c in DUP_COLUMNS if c not in COLUMNS)
    kept = ", ".join(f"CASE WHEN x.h IS NOT NULL THEN r.{c} END AS dup_{c}" for c in DUP_COLUMNS)
    return f"""
SELECT r._row_key, r.event_id, r.anonymous_id, r.event_ts, r.name, r.level, r.is_bot, r.ua_device, r.ua_browser, r.ua_os,
  CASE WHEN r.name IN ({page_events}) THEN {d.json_text('r.context', 'page_view_id')} END AS ctx_page_view_id,
  {only_pv('r.url')} AS pv_url, {only_pv('r.title')} AS pv_title, {only_pv('r.referrer')} AS pv_referrer,
  {only_pv(d.json_text('r.context', 'locale'))} AS pv_locale, {only_pv(d.json_text('r.context', 'tz'))} AS pv_timezone,
  {only_pv(d.json_text('r.context', 'country'))} AS pv_country,
  CASE WHEN r.name = 'page_leave' THEN {d.json_text('r.props', 'engaged_ms')} END AS engaged_text,
  CASE WHEN r.name = 'page_leave' THEN {d.json_text('r.props', 'max_scroll_pct')}
       WHEN r.name IN ('scroll', 'page_ping') THEN {d.json_text('r.props', 'depth_pct')} END AS scroll_text,
  x.h IS NOT NULL AS maybe_dup, {kept}
FROM ({batch_rows(b, cols + ', ' + dup_cols + ', ' + d.hash64('r.event_id') + ' AS h')}
) r
LEFT JOIN dups x ON x.h = r.h
"""


def dropped_sql(b: Bounds, d: Dialect) -> str:
    """The copies the exact dedupe drops (``dropped``): of the flagged rows of ``slim``, all but
    the first of each event id in ``DUP_ORDER``."""
    own = {c: f"dup_{c}" for c in DUP_COLUMNS}
    order = ", ".join(
        " ".join([own.get(term.split()[0], term.split()[0]), *term.split()[1:]]) for term in DUP_ORDER.split(", ")
    )
    return f"""
SELECT _row_key FROM (
  SELECT _row_key, row_number() OVER (PARTITION BY event_id ORDER BY {order}) AS dup_rank
  FROM slim WHERE maybe_dup
) y WHERE dup_rank > 1
"""


def windows_sql(b: Bounds, d: Dialect) -> str:
    """The two window passes (``win``), over as few columns as possible: every column carried
    through a sort costs, so the rest of ``slim`` is joined back by ``_row_key`` afterwards.
    Each event once: the copies in ``dropped`` have no row here, so none in ``ev`` either."""
    return f"""
SELECT _row_key, seq, chain_start, CAST(floor((event_ts - chain_start) / {b.max_ms}) AS BIGINT) AS chunk
FROM (
  SELECT g.*, max(CASE WHEN g.since_prev IS NULL OR g.since_prev > {b.gap_ms} THEN g.event_ts END) OVER w AS chain_start
  FROM (
    SELECT _row_key, anonymous_id, event_ts, event_id,
      event_ts - lag(event_ts) OVER w AS since_prev, row_number() OVER w AS seq
    FROM slim s WHERE NOT EXISTS (SELECT 1 FROM dropped x WHERE x._row_key = s._row_key)
    WINDOW w AS (PARTITION BY anonymous_id ORDER BY event_ts, event_id)
  ) g
  WINDOW w AS (PARTITION BY g.anonymous_id ORDER BY g.event_ts, g.event_id)
) c
"""


def events_sql(b: Bounds, d: Dialect) -> str:
    """The sessionized events (``ev``): ``slim`` with each event's chain, piece and page view.

    An event without a page view id from the tracker belongs to the latest page view before it
    in the same session (server-side SDKs send none); that lookup is a window over page views
    and such events only, of the visitors that have such events (often none: browsers send ids)."""
    page_events = ", ".join(f"'{n}'" for n in PAGE_EVENTS)
    last_pv = "CASE WHEN s.name = 'page_view' THEN {} END".format
    return f"""
WITH orphan_anons AS (
  SELECT DISTINCT anonymous_id FROM slim
  WHERE ctx_page_view_id IS NULL AND name IN ({page_events}) AND name <> 'page_view'
),
orphans AS (
  SELECT s._row_key, s.name,
    {d.last_ignore_nulls(last_pv('w.chain_start'))} OVER ow AS pv_chain_start,
    {d.last_ignore_nulls(last_pv('w.chunk'))} OVER ow AS pv_chunk,
    {d.last_ignore_nulls(last_pv('coalesce(s.ctx_page_view_id, s.event_id)'))} OVER ow AS pv_id
  FROM slim s JOIN orphan_anons a ON a.anonymous_id = s.anonymous_id
  JOIN win w ON w._row_key = s._row_key
  WHERE s.name = 'page_view' OR (s.ctx_page_view_id IS NULL AND s.name IN ({page_events}))
  WINDOW ow AS (PARTITION BY s.anonymous_id ORDER BY s.event_ts, s.event_id)
)
SELECT s._row_key, s.anonymous_id, s.event_ts, s.name, s.level, s.is_bot, s.ua_device, s.ua_browser, s.ua_os,
  s.pv_url, s.pv_title, s.pv_referrer, s.pv_locale, s.pv_timezone, s.pv_country, s.engaged_text, s.scroll_text,
  w.seq, w.chain_start, w.chunk,
  CASE WHEN s.ctx_page_view_id IS NOT NULL THEN s.ctx_page_view_id
       WHEN s.name = 'page_view' THEN s.event_id
       WHEN o.pv_chain_start = w.chain_start AND o.pv_chunk = w.chunk THEN o.pv_id
  END AS page_view_id
FROM slim s
JOIN win w ON w._row_key = s._row_key
LEFT JOIN (SELECT * FROM orphans WHERE name <> 'page_view') o ON o._row_key = s._row_key
"""


def chain_check_sql(b: Bounds) -> str:
    """Chains whose computed start may be wrong (they may begin before the context) or whose
    cut points reach past the rewritten days: the driver widens the batch for them."""
    return f"""
SELECT anonymous_id, chain_start, max(end_ms) AS chain_end, max(chunk) AS pieces
FROM sess0
GROUP BY anonymous_id, chain_start
HAVING (chain_start < {b.c0 + b.gap_ms} AND max(end_ms) >= {b.r0})
    OR (max(chunk) > 0 AND max(end_ms) >= {b.r1})
"""
