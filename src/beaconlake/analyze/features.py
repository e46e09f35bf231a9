"""Per-person features as SQL over the convert stage's tables.

A person is a stitched user, else an anonymous id: ``coalesce(identities.user_id,
stitched_user, anonymous_id)``, so an identified browser's earlier anonymous sessions count
for its user. The SQL follows the shared rules of ``beaconlake.backends.engine.base`` (types
STRING/BIGINT/DOUBLE, no QUALIFY, no FILTER clauses) and asks the engine's ``Dialect`` for the
functions spelled differently, so DuckDB and Spark SQL run the same statements.

Every query takes ``as_of_ms``: only what happened before it counts. The run uses the tenant's
newest event; the propensity model uses earlier cut-offs to build its training snapshots.
Doubles are written ``1e0``, ``6e4``: Spark reads ``1.0`` as a DECIMAL and would return decimals.
Times of day and days of week are UTC (the sessions table has the visitor's time zone, but
converting each visit to local time is left for later: see docs/analyze.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from beaconlake.analyze.settings import AnalyzeSettings, Goal
from beaconlake.backends.engine.base import Dialect
from beaconlake.units import DAY_MS

WEEK_MS = 7 * DAY_MS

# What each numeric feature is, in its unit: the docs and the API's segment centroids use these names.
NUMERIC = (
    "first_seen", "last_seen", "recency_days", "sessions", "sessions_per_week", "active_week_share",
    "page_views", "pageviews_per_session", "engaged_secs", "engaged_secs_per_session", "engaged_secs_per_page",
    "bounce_rate", "avg_scroll_pct", "clicks_per_min", "pointer_per_min", "rage_clicks", "rage_clicks_per_page",
    "morning_share", "afternoon_share", "evening_share", "night_share", "weekend_share", "mobile_share",
    "categories_viewed", "category_entropy", "sale_share", "searches_per_session", "product_views", "cart_adds",
    "cart_adds_per_product_view", "conversions", "conversion_rate", "monetary_value", "steps_to_convert",
    "mins_to_convert", "high_level_events",
)
TEXT = ("first_referrer_host", "first_utm_source", "first_utm_medium", "first_utm_campaign")
LOW_POINTER = ("pointer_move", "touch")


def lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in(names) -> str:
    return "(" + ", ".join(lit(n) for n in names) + ")" if names else "(NULL)"


@dataclass(frozen=True)
class Query:
    """The SQL of one tenant's features, for one cut-off and optionally one set of people."""

    dialect: Dialect
    tenant: str
    goal: Goal
    settings: AnalyzeSettings
    as_of_ms: int
    persons: str | None = None  # a view with a person_id column: only these people

    # -- building blocks --------------------------------------------------------------------------

    def person(self, alias: str) -> str:
        return f"coalesce(i.user_id, {alias}.stitched_user, {alias}.anonymous_id)"

    def only(self, alias: str) -> str:
        if self.persons is None:
            return ""
        return f" AND {self.person(alias)} IN (SELECT person_id FROM {self.persons})"

    def category(self, path: str) -> str:
        """A page's interest category: the first category rule whose prefix the path has, else its
        first path segment, unless that is one of ``ignore_path_segments`` (then NULL)."""
        first = f"lower(regexp_extract(coalesce({path}, ''), '^/([^/?#]*)', 1))"
        rules = "".join(f" WHEN substr({path}, 1, {len(r.prefix)}) = {lit(r.prefix)} THEN {lit(r.category)}"
                        for r in self.settings.category_rules)
        return (f"CASE{rules} WHEN {first} IN {_in(self.settings.ignore_path_segments)} THEN NULL "
                f"ELSE {first} END")

    def ctes(self) -> str:
        d, t = self.dialect, lit(self.tenant)
        as_of = d.timestamp_ms(str(self.as_of_ms))
        ms = d.epoch_ms
        goal = _in(self.goal.events)
        value = d.json_text("e.props", self.goal.value_property)
        return f"""
ids AS (SELECT anonymous_id, user_id FROM identities WHERE tenant = {t}),
ev AS (
  SELECT {self.person('e')} AS person_id, e.session_id, e.name, {ms('e.event_ts')} AS ts,
         CASE WHEN e.name IN {goal} THEN 1 ELSE 0 END AS is_goal,
         CASE WHEN e.name IN {goal} THEN try_cast({value} AS DOUBLE) END AS goal_value
  FROM events e LEFT JOIN ids i ON i.anonymous_id = e.anonymous_id
  WHERE e.tenant = {t} AND e.event_ts < {as_of} AND NOT coalesce(e.is_bot, false){self.only('e')}
),
se AS (
  SELECT {self.person('s')} AS person_id, s.session_id, {ms('s.start_ts')} AS start_ms, {ms('s.end_ts')} AS end_ms,
         s.page_views, coalesce(s.engaged_ms, 0) AS engaged_ms, s.bounced, s.device, s.referrer_host,
         s.utm_source, s.utm_medium, s.utm_campaign,
         CAST(floor(({ms('s.start_ts')} % {DAY_MS}) / 3600000) AS BIGINT) AS hour,
         CAST((floor({ms('s.start_ts')} / {DAY_MS}) + 4) % 7 AS BIGINT) AS dow
  FROM sessions s LEFT JOIN ids i ON i.anonymous_id = s.anonymous_id
  WHERE s.tenant = {t} AND s.start_ts < {as_of} AND NOT coalesce(s.is_bot, false){self.only('s')}
),
pv AS (
  SELECT {self.person('p')} AS person_id, p.session_id, {ms('p.view_ts')} AS view_ms,
         coalesce(p.engaged_ms, 0) AS engaged_ms, p.max_scroll_pct, coalesce(p.clicks, 0) AS clicks,
         coalesce(p.rage_clicks, 0) AS rage_clicks, {self.category('p.path')} AS category
  FROM pageviews p LEFT JOIN ids i ON i.anonymous_id = p.anonymous_id
  WHERE p.tenant = {t} AND p.view_ts < {as_of}{self.only('p')}
    -- page views have no bot flag of their own: their session's
    AND NOT EXISTS (SELECT 1 FROM sessions b WHERE b.tenant = {t} AND b.session_id = p.session_id AND b.is_bot)
),
cat AS (
  -- a page view without page_leave still counts one second for its category
  SELECT person_id, category, CAST(sum(engaged_ms) + 1000 * count(*) AS DOUBLE) AS w
  FROM pv WHERE category IS NOT NULL GROUP BY person_id, category
)"""

    # -- the queries ------------------------------------------------------------------------------

    def features(self) -> str:
        d = self.dialect
        sale = _in(self.settings.sale_categories)
        as_of = self.as_of_ms
        mobile = "CASE WHEN device IS NOT NULL AND device NOT IN ('Other', 'Spider') THEN 1e0 ELSE 0e0 END"
        share = lambda cond: f"avg(CASE WHEN {cond} THEN 1e0 ELSE 0e0 END)"
        return f"""WITH {self.ctes()},
sa AS (
  SELECT person_id, count(*) AS sessions, min(start_ms) AS first_start, max(end_ms) AS last_end,
         sum(page_views) AS page_views, sum(engaged_ms) AS engaged_ms,
         {share('bounced')} AS bounce_rate,
         {share('hour >= 6 AND hour < 12')} AS morning_share, {share('hour >= 12 AND hour < 18')} AS afternoon_share,
         {share('hour >= 18')} AS evening_share, {share('hour < 6')} AS night_share,
         {share('dow IN (0, 6)')} AS weekend_share, avg({mobile}) AS mobile_share,
         count(DISTINCT floor(start_ms / {WEEK_MS})) AS active_weeks,
         {d.min_by('referrer_host', 'start_ms')} AS first_referrer_host,
         {d.min_by('utm_source', 'start_ms')} AS first_utm_source,
         {d.min_by('utm_medium', 'start_ms')} AS first_utm_medium,
         {d.min_by('utm_campaign', 'start_ms')} AS first_utm_campaign
  FROM se GROUP BY person_id
),
pa AS (
  SELECT person_id, avg(CAST(max_scroll_pct AS DOUBLE)) AS avg_scroll_pct, sum(clicks) AS clicks,
         sum(rage_clicks) AS rage_clicks, count(*) AS views, count(DISTINCT category) AS categories_viewed
  FROM pv GROUP BY person_id
),
ea AS (
  SELECT person_id, min(ts) AS first_ts, max(ts) AS last_ts,
         sum(CASE WHEN name IN {_in(LOW_POINTER)} THEN 1 ELSE 0 END) AS pointer_events,
         sum(CASE WHEN name = 'search' THEN 1 ELSE 0 END) AS searches,
         sum(CASE WHEN name = 'product_view' THEN 1 ELSE 0 END) AS product_views,
         sum(CASE WHEN name = 'add_to_cart' THEN 1 ELSE 0 END) AS cart_adds,
         sum(is_goal) AS conversions,
         count(DISTINCT CASE WHEN is_goal = 1 THEN session_id END) AS goal_sessions,
         coalesce(sum(goal_value), 0e0) AS monetary_value
  FROM ev GROUP BY person_id
),
ent AS (
  SELECT person_id, sum(CASE WHEN category IN {sale} THEN w ELSE 0e0 END) / sum(w) AS sale_share,
         -sum((w / tot) * ln(w / tot)) AS entropy
  FROM (SELECT person_id, category, w, sum(w) OVER (PARTITION BY person_id) AS tot FROM cat) x
  GROUP BY person_id
),
ncat AS (SELECT count(DISTINCT category) AS n FROM pv),
gf AS (SELECT person_id, session_id, min(ts) AS goal_ts FROM ev WHERE is_goal = 1 GROUP BY person_id, session_id),
conv AS (
  SELECT gf.person_id, avg(CAST(c.steps AS DOUBLE)) AS steps_to_convert, avg(c.mins) AS mins_to_convert
  FROM gf JOIN (
    SELECT g.person_id, g.session_id, count(*) AS steps, (min(g.goal_ts) - min(p.view_ms)) / 6e4 AS mins
    FROM gf g JOIN pv p ON p.person_id = g.person_id AND p.session_id = g.session_id AND p.view_ms <= g.goal_ts
    GROUP BY g.person_id, g.session_id
  ) c ON c.person_id = gf.person_id AND c.session_id = gf.session_id
  GROUP BY gf.person_id
),
hl AS (
  SELECT {self.person('h')} AS person_id, count(*) AS high_level_events
  FROM high_level_events h LEFT JOIN ids i ON i.anonymous_id = h.anonymous_id
  WHERE h.tenant = {lit(self.tenant)} AND h.event_ts < {d.timestamp_ms(str(as_of))}{self.only('h')}
  GROUP BY {self.person('h')}
)
SELECT sa.person_id,
  CAST(least(coalesce(ea.first_ts, sa.first_start), sa.first_start) AS BIGINT) AS first_seen,
  CAST(greatest(coalesce(ea.last_ts, sa.last_end), sa.last_end) AS BIGINT) AS last_seen,
  ({as_of} - greatest(coalesce(ea.last_ts, sa.last_end), sa.last_end)) / 8.64e7 AS recency_days,
  CAST(sa.sessions AS BIGINT) AS sessions,
  sa.sessions / greatest(({as_of} - sa.first_start) / 6.048e8, 1e0) AS sessions_per_week,
  least(1e0, sa.active_weeks / greatest(ceil(({as_of} - sa.first_start) / 6.048e8), 1e0)) AS active_week_share,
  CAST(sa.page_views AS BIGINT) AS page_views, CAST(sa.page_views AS DOUBLE) / sa.sessions AS pageviews_per_session,
  sa.engaged_ms / 1e3 AS engaged_secs, sa.engaged_ms / 1e3 / sa.sessions AS engaged_secs_per_session,
  sa.engaged_ms / 1e3 / greatest(sa.page_views, 1) AS engaged_secs_per_page,
  sa.bounce_rate, pa.avg_scroll_pct,
  coalesce(pa.clicks, 0) / greatest(sa.engaged_ms / 6e4, 2.5e-1) AS clicks_per_min,
  coalesce(ea.pointer_events, 0) / greatest(sa.engaged_ms / 6e4, 2.5e-1) AS pointer_per_min,
  CAST(coalesce(pa.rage_clicks, 0) AS BIGINT) AS rage_clicks,
  CAST(coalesce(pa.rage_clicks, 0) AS DOUBLE) / greatest(coalesce(pa.views, 0), 1) AS rage_clicks_per_page,
  sa.morning_share, sa.afternoon_share, sa.evening_share, sa.night_share, sa.weekend_share, sa.mobile_share,
  CAST(coalesce(pa.categories_viewed, 0) AS BIGINT) AS categories_viewed,
  CASE WHEN ncat.n > 1 THEN coalesce(ent.entropy, 0e0) / ln(ncat.n) ELSE 0e0 END AS category_entropy,
  coalesce(ent.sale_share, 0e0) AS sale_share,
  CAST(coalesce(ea.searches, 0) AS DOUBLE) / sa.sessions AS searches_per_session,
  CAST(coalesce(ea.product_views, 0) AS BIGINT) AS product_views, CAST(coalesce(ea.cart_adds, 0) AS BIGINT) AS cart_adds,
  CAST(coalesce(ea.cart_adds, 0) AS DOUBLE) / greatest(coalesce(ea.product_views, 0), 1) AS cart_adds_per_product_view,
  CAST(coalesce(ea.conversions, 0) AS BIGINT) AS conversions,
  CAST(coalesce(ea.goal_sessions, 0) AS DOUBLE) / sa.sessions AS conversion_rate,
  coalesce(ea.monetary_value, 0e0) AS monetary_value,
  conv.steps_to_convert, conv.mins_to_convert,
  CAST(coalesce(hl.high_level_events, 0) AS BIGINT) AS high_level_events,
  sa.first_referrer_host, sa.first_utm_source, sa.first_utm_medium, sa.first_utm_campaign
FROM sa CROSS JOIN ncat
LEFT JOIN pa ON pa.person_id = sa.person_id
LEFT JOIN ea ON ea.person_id = sa.person_id
LEFT JOIN ent ON ent.person_id = sa.person_id
LEFT JOIN conv ON conv.person_id = sa.person_id
LEFT JOIN hl ON hl.person_id = sa.person_id
ORDER BY sa.person_id"""

    def interests(self) -> str:
        """Each person's categories with their share of the person's engaged time."""
        return f"""WITH {self.ctes()}
SELECT person_id, category, w / sum(w) OVER (PARTITION BY person_id) AS weight
FROM cat ORDER BY person_id, weight DESC, category"""

    def goal_people(self, start_ms: int, end_ms: int) -> str:
        """People with a goal event in [start_ms, end_ms) (the cut-off does not apply)."""
        d, t = self.dialect, lit(self.tenant)
        return f"""WITH ids AS (SELECT anonymous_id, user_id FROM identities WHERE tenant = {t})
SELECT DISTINCT {self.person('e')} AS person_id
FROM events e LEFT JOIN ids i ON i.anonymous_id = e.anonymous_id
WHERE e.tenant = {t} AND e.name IN {_in(self.goal.events)}
  AND e.event_ts >= {d.timestamp_ms(str(start_ms))} AND e.event_ts < {d.timestamp_ms(str(end_ms))}"""

    def identity(self) -> str:
        """Each person's user id (or NULL) and anonymous ids, newest activity first."""
        t = lit(self.tenant)
        return f"""WITH ids AS (SELECT anonymous_id, user_id FROM identities WHERE tenant = {t})
SELECT {self.person('s')} AS person_id, coalesce(i.user_id, s.stitched_user) AS user_id, s.anonymous_id,
       max({self.dialect.epoch_ms('s.end_ts')}) AS last_ms
FROM sessions s LEFT JOIN ids i ON i.anonymous_id = s.anonymous_id
WHERE s.tenant = {t} AND NOT coalesce(s.is_bot, false){self.only('s')}
GROUP BY {self.person('s')}, coalesce(i.user_id, s.stitched_user), s.anonymous_id
ORDER BY 1, 4 DESC"""

    def high_level(self) -> str:
        t = lit(self.tenant)
        return f"""WITH ids AS (SELECT anonymous_id, user_id FROM identities WHERE tenant = {t})
SELECT {self.person('h')} AS person_id, h.name, count(*) AS n
FROM high_level_events h LEFT JOIN ids i ON i.anonymous_id = h.anonymous_id
WHERE h.tenant = {t}{self.only('h')}
GROUP BY {self.person('h')}, h.name ORDER BY 1, 2"""


def changed_people(dialect: Dialect, tenant: str, after_received_ms: int) -> str:
    """People with events the collector received after ``after_received_ms``: those to recompute."""
    t = lit(tenant)
    return f"""WITH ids AS (SELECT anonymous_id, user_id FROM identities WHERE tenant = {t})
SELECT DISTINCT coalesce(i.user_id, e.stitched_user, e.anonymous_id) AS person_id
FROM events e LEFT JOIN ids i ON i.anonymous_id = e.anonymous_id
WHERE e.tenant = {t} AND e.received_at > {dialect.timestamp_ms(str(after_received_ms))}"""


def tenant_clock(dialect: Dialect, tenant: str) -> str:
    """The tenant's newest event time and newest receive time (ms), NULL without events."""
    return (f"SELECT max({dialect.epoch_ms('event_ts')}) AS as_of, max({dialect.epoch_ms('received_at')}) AS received "
            f"FROM events WHERE tenant = {lit(tenant)}")
