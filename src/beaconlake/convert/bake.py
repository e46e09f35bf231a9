"""Bake the sessionized events (``ev``) into the output tables, in SQL both engines run.

Intermediate results, materialized by the driver in this order:

``sess0``  one row per session of the context, from ``ev``
``pv``     one row per page view (its page_view event plus what happened on the page)
``sess``   sessions with their page view figures, stitched user and ``session_index``
``evk``    per event of the rewritten days: its ``_row_key`` and session (id, index, stitched user)

``stored_sessions`` (a few columns of the sessions table as committed) and ``identities`` are
views the driver registers. Output queries cover a range of days (the batch's rewritten days
[r0, r1), or one of them); ``raw_r`` (the raw files of those days, with ``_row_key``) supplies the
wide columns of the events, which never went through the sorts.

Output queries put the wide side first and the narrow side it is joined with last (``FROM raw r
JOIN evk``): an engine that plans joins as written (DuckDB's writes do) then streams the wide raw
rows through a small hash table of the narrow one, in raw order, instead of copying them into one.
"""

from __future__ import annotations

from beaconlake.backends.engine.base import Dialect
from beaconlake.convert.promote import Promoted, select_expr
from beaconlake.convert.sessionize import Bounds, session_id_sql

# What counts as an interaction with a page, for time_to_first_interaction_ms.
INTERACTIONS = ("click", "touch", "scroll", "rage_click", "link_click", "form_submit")
BOUNCE_ENGAGED_MS = 10_000
URL_SCHEME = "^[a-zA-Z][a-zA-Z0-9+.-]*://"
SESSION_KEY = ("anonymous_id", "chain_start", "chunk")
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


def _path(url: str) -> str:
    return f"nullif(regexp_extract({url}, '{URL_SCHEME}[^/?#]*([^?#]*)', 1), '')"


def _host(url: str) -> str:
    return f"nullif(lower(regexp_extract({url}, '{URL_SCHEME}([^/?#:@]*@)?([^/?#:]+)', 2)), '')"


def _query_param(d: Dialect, url: str, name: str) -> str:
    raw = f"nullif(regexp_extract({url}, '[?&]{name}=([^&#]*)', 1), '')"
    spaced = f"replace({raw}, '+', ' ')"  # '+' is a space in a query string; DuckDB's decoder leaves it
    # decode only well-formed percent-encoding, so no engine has to guess what a stray '%' means
    well_formed = d.matches(spaced, "'^([^%]|%[0-9a-fA-F][0-9a-fA-F])*$'")
    return f"CASE WHEN {well_formed} THEN {d.url_decode(spaced)} ELSE {spaced} END"


def _number(text: str, low: str, high: str) -> str:
    """A JSON number within [low, high) as DOUBLE; anything else NULL, never an error."""
    v = f"try_cast({text} AS DOUBLE)"
    return f"CASE WHEN {v} >= {low} AND {v} < {high} THEN {v} END"


def _day(column: str, lo: int, hi: int) -> str:
    return f"{column} >= {lo} AND {column} < {hi}"


def _join_session(ev: str = "e", sess: str = "s") -> str:
    return " AND ".join(f"{sess}.{k} = {ev}.{k}" for k in SESSION_KEY)


def sessions0_sql(b: Bounds, d: Dialect) -> str:
    return f"""
SELECT anonymous_id, chain_start, chunk, {session_id_sql(b.tenant, 'anonymous_id', 'chain_start', 'chunk')} AS session_id,
  min(event_ts) AS start_ms, max(event_ts) AS end_ms,
  count(*) AS events,
  count_if(level = 'low') AS low_events, count_if(level = 'mid') AS mid_events,
  count_if(level = 'high') AS high_events,
  bool_or(is_bot) AS is_bot,
  {d.min_by('ua_device', 'seq')} AS device, {d.min_by('ua_browser', 'seq')} AS browser, {d.min_by('ua_os', 'seq')} AS os
FROM ev GROUP BY anonymous_id, chain_start, chunk
"""


def pageviews_sql(b: Bounds, d: Dialect) -> str:
    """A page view gathers the events that carry its id, from its page_view event up to
    max_session_hours later (a page_leave after a long idle still counts, though it opens a session)."""
    interactions = ", ".join(f"'{n}'" for n in INTERACTIONS)
    return f"""
WITH base AS (
  SELECT * FROM (
    SELECT anonymous_id, page_view_id, chain_start, chunk, event_ts AS view_ms, seq AS view_seq,
      pv_url AS url, pv_title AS title, pv_referrer AS referrer,
      pv_locale AS locale, pv_timezone AS timezone, pv_country AS country,
      row_number() OVER (PARTITION BY anonymous_id, page_view_id ORDER BY seq) AS pv_rank
    FROM ev WHERE name = 'page_view'
  ) x WHERE pv_rank = 1
),
stats AS (
  SELECT b.anonymous_id, b.page_view_id,
    -- the tracker's page_leave says; else a Snowplow page's last activity ping (docs/protocols.md)
    coalesce(max(CASE WHEN e.name = 'page_leave' THEN {_number('e.engaged_text', '0', '1e12')} END),
             max(CASE WHEN e.name = 'page_ping' THEN e.event_ts - b.view_ms END)) AS engaged,
    max({_number('e.scroll_text', '0', '100.5')}) AS max_scroll,
    min(CASE WHEN e.name IN ({interactions}) AND e.seq > b.view_seq THEN e.event_ts END) AS first_interaction_ms,
    count_if(e.name = 'click') AS clicks, count_if(e.name = 'rage_click') AS rage_clicks,
    max(e.event_ts) AS last_ms, bool_or(e.name = 'page_leave') AS left_page
  FROM base b JOIN ev e ON e.anonymous_id = b.anonymous_id AND e.page_view_id = b.page_view_id
  WHERE e.event_ts >= b.view_ms AND e.event_ts < b.view_ms + {b.max_ms}
  GROUP BY b.anonymous_id, b.page_view_id
)
SELECT v.*, row_number() OVER (PARTITION BY v.session_id ORDER BY v.view_seq) AS view_index FROM (
  SELECT b.anonymous_id, b.page_view_id,
    {session_id_sql(b.tenant, 'b.anonymous_id', 'b.chain_start', 'b.chunk')} AS session_id,
    b.view_ms, b.view_seq, b.url, b.title, b.referrer, b.locale, b.timezone, b.country,
    CAST(floor(s.engaged) AS BIGINT) AS engaged_ms, CAST(floor(s.max_scroll) AS INT) AS max_scroll_pct,
    s.first_interaction_ms - b.view_ms AS time_to_first_interaction_ms,
    s.clicks, s.rage_clicks, s.last_ms - b.view_ms AS duration_ms, s.left_page
  FROM base b JOIN stats s ON s.anonymous_id = b.anonymous_id AND s.page_view_id = b.page_view_id
) v
"""


def sessions_sql(b: Bounds, d: Dialect) -> str:
    """Sessions with page view figures, the stitched user and session_index.

    ``session_index`` counts the sessions committed before this batch's days (``stored_sessions``)
    and ranks the batch's own after them. Context sessions that start before the rewritten days
    keep the index they were committed with; their rows are not rewritten, only their events."""
    start_ts = d.epoch_ms("start_ts")
    utm = {name: _query_param(d, "landing_url", name) for name in UTM_FIELDS}
    return f"""
WITH pv_stats AS (
  SELECT session_id, count(*) AS page_views, sum(coalesce(engaged_ms, 0)) AS engaged_ms,
    {d.min_by('url', 'view_seq')} AS landing_url, {d.min_by('referrer', 'view_seq')} AS referrer,
    {d.max_by('url', 'view_seq')} AS exit_url, {d.min_by('locale', 'view_seq')} AS locale,
    {d.min_by('timezone', 'view_seq')} AS timezone, {d.min_by('country', 'view_seq')} AS country
  FROM pv GROUP BY session_id
),
prior AS (
  SELECT anonymous_id, count_if({start_ts} < {b.c0}) AS n_c0, count(*) AS n_r0
  FROM stored_sessions WHERE {start_ts} < {b.r0} GROUP BY anonymous_id
),
ranked AS (
  SELECT s.*, row_number() OVER (PARTITION BY s.anonymous_id, s.start_ms >= {b.r0} ORDER BY s.start_ms, s.session_id) AS rn,
    max(s.chunk) OVER (PARTITION BY s.anonymous_id, s.chain_start) > 0 AS split
  FROM sess0 s
)
SELECT r.*, i.user_id AS stitched_user,
  CAST(CASE WHEN r.start_ms >= {b.r0} THEN coalesce(p.n_r0, 0) + r.rn
            ELSE coalesce(st.session_index, coalesce(p.n_c0, 0) + r.rn) END AS INT) AS session_index,
  coalesce(v.page_views, 0) AS page_views, coalesce(v.engaged_ms, 0) AS engaged_ms,
  v.landing_url, v.exit_url, v.referrer, v.locale, v.timezone, v.country,
  {', '.join(f'{expr} AS {name}' for name, expr in utm.items())}
FROM ranked r
LEFT JOIN prior p ON p.anonymous_id = r.anonymous_id
LEFT JOIN stored_sessions st ON st.session_id = r.session_id AND r.start_ms < {b.r0}
LEFT JOIN identities i ON i.anonymous_id = r.anonymous_id
LEFT JOIN pv_stats v ON v.session_id = r.session_id
"""


def event_keys_sql(b: Bounds, d: Dialect) -> str:
    """``evk``: what the events table takes from the sessionization, per event of the rewritten
    days (deduplicated: a dropped copy has no row), keyed by ``_row_key``. One narrow join of
    ``ev`` with ``sess`` for the batch, so the per-day writes join the raw rows to this alone."""
    return f"""
SELECT e._row_key, e.event_ts, e.level, s.session_id, s.session_index, s.stitched_user
FROM ev e JOIN sess s ON {_join_session()}
WHERE {_day('e.event_ts', b.r0, b.r1)}
"""


def events_out_sql(b: Bounds, d: Dialect, lo: int, hi: int, raw: str, promoted: list[Promoted]) -> str:
    """The events of days [lo, hi): raw columns from the view ``raw`` joined back on ``_row_key``
    to their session (``evk``)."""
    ts = d.timestamp_ms
    extra = "".join(f",\n  {select_expr(p, b.tenant, d, 'r.props', 'r.')} AS {p.column}" for p in promoted)
    return f"""
SELECT r.tenant, r.event_id, r.level, r.name, {ts('r.event_ts')} AS event_ts, {d.date_ms('r.event_ts')} AS event_date,
  r.anonymous_id, r.user_id, coalesce(r.user_id, s.stitched_user) AS stitched_user,
  s.session_id, s.session_index, r.session_id AS client_session_id,
  r.url, r.referrer, r.title, r.props, r.context,
  {ts('r.client_ts')} AS client_ts, {ts('r.sent_at')} AS sent_at, {ts('r.received_at')} AS received_at,
  r.ip, r.user_agent, r.ua_browser, r.ua_browser_version, r.ua_os, r.ua_os_version, r.ua_device,
  r.is_bot, r.segment, r.source{extra}
FROM {raw} r
JOIN (SELECT _row_key, session_id, session_index, stitched_user FROM evk WHERE {_day('event_ts', lo, hi)}) s
  ON s._row_key = r._row_key
WHERE {_day('r.event_ts', lo, hi)}
"""


def with_bucket(d: Dialect, sql: str, buckets: dict) -> str:
    """``sql``'s events with their ``bucket`` id (buckets.py): ``buckets`` maps each day to its count."""
    if len(buckets) == 1:
        n = str(next(iter(buckets.values())))
    else:
        n = "CASE x.event_date " + " ".join(f"WHEN DATE '{day.isoformat()}' THEN {k}" for day, k in buckets.items()) + " END"
    return f"SELECT x.*, {d.bucket_id('x.anonymous_id', n)} AS bucket FROM ({sql}) x"


def high_level_out_sql(b: Bounds, d: Dialect, lo: int, hi: int, raw: str) -> str:
    ts = d.timestamp_ms
    return f"""
SELECT r.tenant, r.event_id, r.name, {ts('r.event_ts')} AS event_ts, {d.date_ms('r.event_ts')} AS event_date,
  r.anonymous_id, coalesce(r.user_id, s.stitched_user) AS stitched_user, s.session_id, s.session_index,
  {d.json_text('r.props', 'definition')} AS definition, {d.json_text('r.props', 'source')} AS source,
  {d.json_text_list('r.props', 'matched_event_ids')} AS matched_event_ids, r.url, r.props
FROM {raw} r
JOIN (SELECT _row_key, session_id, session_index, stitched_user FROM evk
      WHERE level = 'high' AND {_day('event_ts', lo, hi)}) s ON s._row_key = r._row_key
WHERE r.level = 'high' AND {_day('r.event_ts', lo, hi)}
"""


def sessions_out_sql(b: Bounds, d: Dialect, lo: int, hi: int) -> str:
    ts = d.timestamp_ms
    return f"""
SELECT '{_esc(b.tenant)}' AS tenant, session_id, anonymous_id, stitched_user, session_index,
  {ts('start_ms')} AS start_ts, {ts('end_ms')} AS end_ts, {d.date_ms('start_ms')} AS session_date,
  end_ms - start_ms AS duration_ms,
  CAST(events AS INT) AS events, CAST(low_events AS INT) AS low_events, CAST(mid_events AS INT) AS mid_events,
  CAST(high_events AS INT) AS high_events, CAST(page_views AS INT) AS page_views, CAST(engaged_ms AS BIGINT) AS engaged_ms,
  landing_url, {_path('landing_url')} AS landing_path, exit_url, {_path('exit_url')} AS exit_path,
  referrer, {_host('referrer')} AS referrer_host,
  utm_source, utm_medium, utm_campaign, utm_term, utm_content,
  device, browser, os, upper(nullif(country, '')) AS country, locale, timezone,
  (page_views <= 1 AND engaged_ms < {BOUNCE_ENGAGED_MS}) AS bounced, is_bot, split
FROM sess
WHERE {_day('start_ms', lo, hi)}
"""


def pageviews_out_sql(b: Bounds, d: Dialect, lo: int, hi: int) -> str:
    """The page views of days [lo, hi). Their stitched user is their session's, which is the
    identity map's user for the anonymous id: looked up there (small) rather than in ``sess``."""
    ts = d.timestamp_ms
    return f"""
SELECT '{_esc(b.tenant)}' AS tenant, p.page_view_id, p.session_id, p.anonymous_id, i.user_id AS stitched_user,
  CAST(p.view_index AS INT) AS view_index, {ts('p.view_ms')} AS view_ts, {d.date_ms('p.view_ms')} AS view_date,
  p.url, {_path('p.url')} AS path, p.title, p.referrer,
  p.engaged_ms, p.max_scroll_pct, p.time_to_first_interaction_ms,
  CAST(p.clicks AS INT) AS clicks, CAST(p.rage_clicks AS INT) AS rage_clicks,
  p.duration_ms, p.left_page
FROM pv p
LEFT JOIN identities i ON i.anonymous_id = p.anonymous_id
WHERE {_day('p.view_ms', lo, hi)}
"""


def renumber_sql(b: Bounds, d: Dialect) -> str:
    """Days (as day numbers since the epoch) of committed sessions after the batch whose
    session_index no longer follows on from the batch's last one: a late event added or merged
    sessions before them, so those days are re-converted too."""
    start_ms = d.epoch_ms("start_ts")
    return f"""
WITH later AS (
  SELECT anonymous_id, session_index, {start_ms} AS start_ms FROM stored_sessions WHERE {start_ms} >= {b.r1}
),
mine AS (
  SELECT anonymous_id, max(session_index) AS last_index FROM sess
  WHERE start_ms >= {b.r0} AND start_ms < {b.r1} GROUP BY anonymous_id
),
nxt AS (
  SELECT anonymous_id, {d.min_by('session_index', 'start_ms')} AS next_index FROM later GROUP BY anonymous_id
)
SELECT DISTINCT CAST(floor(l.start_ms / 86400000) AS BIGINT) AS day_no
FROM later l
JOIN mine m ON m.anonymous_id = l.anonymous_id
JOIN nxt n ON n.anonymous_id = l.anonymous_id
WHERE n.next_index <> m.last_index + 1
"""


def new_identities_sql() -> str:
    """``new_obs``: the (anonymous id, user id) pairs of this run's new files (``new_ids``), with
    when each was first and last seen; no rows when they carry no user id."""
    return """
SELECT anonymous_id, user_id, min(event_ts) AS first_ms, max(event_ts) AS last_ms
FROM new_ids WHERE user_id IS NOT NULL GROUP BY anonymous_id, user_id
"""


def identities_sql(d: Dialect) -> str:
    """The identity map after this run: per anonymous id, the user id of its latest identified
    event (``new_obs``: from this run's new files; ``identities``: the committed map)."""
    return f"""
WITH obs AS (
  SELECT anonymous_id, user_id, first_ms, last_ms FROM new_obs
  UNION ALL
  SELECT anonymous_id, user_id, {d.epoch_ms('first_identified_ts')}, {d.epoch_ms('identified_ts')} FROM identities
),
ranked AS (
  SELECT anonymous_id, user_id, last_ms, min(first_ms) OVER (PARTITION BY anonymous_id) AS first_ms,
    row_number() OVER (PARTITION BY anonymous_id ORDER BY last_ms DESC, user_id DESC) AS rn
  FROM obs
)
SELECT anonymous_id, user_id,
  {d.timestamp_ms('first_ms')} AS first_identified_ts, {d.timestamp_ms('last_ms')} AS identified_ts
FROM ranked WHERE rn = 1
"""


def _esc(text: str) -> str:
    return text.replace("'", "''")
