"""The Traffic view: sessions, bounce rate, engaged time, scroll depth, devices, referrers and
campaigns over a range, from the ``sessions`` and ``pageviews`` tables.

It reads the range's days of both, and the sessions of up to ``convert.max_session_hours`` before
it: a page view of the range can belong to a session that started that long before (sessions are
cut at that length), and the page views of bots' sessions are left out by their session.
"""

from __future__ import annotations

from typing import Any

from beaconlake.convert.scan import Read
from beaconlake.serve.dashboard.tables import Tables, View

# Bots are left out of every figure: a product owner asks about people.
_RANGE = "tenant = ? AND start_ts >= make_timestamptz(? * 1000) AND start_ts < make_timestamptz(? * 1000) AND NOT is_bot"
_VIEWS = ("tenant = ? AND view_ts >= make_timestamptz(? * 1000) AND view_ts < make_timestamptz(? * 1000) "
          "AND session_id IN (SELECT session_id FROM sessions WHERE tenant = ? AND NOT is_bot)")


SESSION_COLUMNS = ("tenant", "session_id", "start_ts", "is_bot", "stitched_user", "anonymous_id", "page_views", "bounced",
                   "duration_ms", "engaged_ms", "device", "browser", "referrer_host", "utm_source", "utm_medium",
                   "utm_campaign", "landing_path")
PAGEVIEW_COLUMNS = ("tenant", "session_id", "view_ts", "max_scroll_pct", "path", "engaged_ms")


def _top(t: View, column: str, args: list[Any], limit: int = 10) -> list[dict[str, Any]]:
    return t.query(f"SELECT coalesce({column}, '(none)') AS key, count(*) AS sessions, "
                   f"round(avg(CASE WHEN bounced THEN 1 ELSE 0 END), 3) AS bounce_rate "
                   f"FROM sessions WHERE {_RANGE} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {limit}", args)


def traffic(t: Tables, tenant: str, start: int, end: int, by: str, max_session_hours: int) -> dict[str, Any]:
    with t.view() as v:
        if not (v.has("sessions") and v.has("pageviews")):
            return {"ready": False, "note": "no converted tables yet: the first convert run has not happened"}
        v.read(Read("sessions", SESSION_COLUMNS, tenant, start - max_session_hours * 3_600_000, end))
        v.read(Read("pageviews", PAGEVIEW_COLUMNS, tenant, start, end))
        return _figures(v, tenant, start, end, by)


def _figures(t: View, tenant: str, start: int, end: int, by: str) -> dict[str, Any]:
    args = [tenant, start, end]
    totals = t.query(
        f"SELECT count(*) AS sessions, count(DISTINCT coalesce(stitched_user, anonymous_id)) AS people, "
        f"coalesce(sum(page_views), 0) AS page_views, round(avg(CASE WHEN bounced THEN 1 ELSE 0 END), 3) AS bounce_rate, "
        f"round(avg(duration_ms)) AS avg_duration_ms, round(avg(engaged_ms)) AS avg_engaged_ms "
        f"FROM sessions WHERE {_RANGE}", args)[0]
    series = t.query(
        f"SELECT epoch_ms(date_trunc('{by}', start_ts)) AS start, count(*) AS sessions, "
        f"count(DISTINCT coalesce(stitched_user, anonymous_id)) AS people, "
        f"round(avg(CASE WHEN bounced THEN 1 ELSE 0 END), 3) AS bounce_rate, round(avg(engaged_ms)) AS avg_engaged_ms "
        f"FROM sessions WHERE {_RANGE} GROUP BY 1 ORDER BY 1", args)
    views = [tenant, start, end, tenant]
    scroll = t.query(
        f"SELECT CASE WHEN max_scroll_pct IS NULL THEN 'unknown' WHEN max_scroll_pct < 25 THEN '0-24%' "
        f"WHEN max_scroll_pct < 50 THEN '25-49%' WHEN max_scroll_pct < 75 THEN '50-74%' ELSE '75-100%' END AS key, "
        f"count(*) AS views FROM pageviews WHERE {_VIEWS} GROUP BY 1 ORDER BY 1", views)
    pages = t.query(
        f"SELECT path AS key, count(*) AS views, round(avg(engaged_ms)) AS avg_engaged_ms, "
        f"round(avg(max_scroll_pct)) AS avg_scroll_pct FROM pageviews WHERE {_VIEWS} "
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10", views)
    page_totals = t.query(
        f"SELECT round(avg(max_scroll_pct)) AS avg_scroll_pct, round(avg(engaged_ms)) AS avg_engaged_ms "
        f"FROM pageviews WHERE {_VIEWS}", views)[0]
    return {
        "ready": True, "from": start, "to": end, "by": by, "totals": {**totals, **page_totals}, "series": series,
        "devices": _top(t, "coalesce(device, 'desktop / other')", args), "browsers": _top(t, "browser", args),
        "referrers": _top(t, "referrer_host", args),
        "campaigns": _top(t, "nullif(concat_ws(' / ', utm_source, utm_medium, utm_campaign), '')", args),
        "landing_pages": _top(t, "landing_path", args), "scroll_depth": scroll, "pages": pages,
    }
