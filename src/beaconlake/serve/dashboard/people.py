"""The People view's data from the convert tables: find people, and a person's recent sessions
and high-level events. Profiles (traits, segment, interests, propensity) come from the profiles
API of the analyze stage, which the page asks directly.

A search reads the tenant's sessions (every day: a person may have been seen once, long ago),
only the columns it shows; a person reads the sessions and high-level events of that id, and the
page views of those sessions' days only.
"""

from __future__ import annotations

from typing import Any

from beaconlake.convert.scan import Read
from beaconlake.serve.dashboard.tables import Tables
from beaconlake.units import DAY_MS

NOT_READY = {"ready": False, "note": "no converted tables yet: the first convert run has not happened"}
SESSION_COLUMNS = ("session_id", "session_index", "start_ts", "end_ts", "duration_ms", "page_views", "events",
                   "engaged_ms", "landing_path", "exit_path", "referrer_host", "device", "browser", "os", "bounced",
                   "anonymous_id", "stitched_user", "tenant")


def search(t: Tables, tenant: str, q: str, limit: int) -> dict[str, Any]:
    with t.view() as v:
        if not v.has("sessions"):
            return {**NOT_READY, "people": []}
        v.read(Read("sessions", ("tenant", "stitched_user", "anonymous_id", "page_views", "start_ts", "end_ts", "is_bot"),
                    tenant))
        like = f"%{q.lower()}%"
        rows = v.query(
            "SELECT coalesce(stitched_user, anonymous_id) AS person_id, max(stitched_user) AS user_id, "
            "count(*) AS sessions, sum(page_views) AS page_views, epoch_ms(min(start_ts)) AS first_seen, "
            "epoch_ms(max(end_ts)) AS last_seen FROM sessions WHERE tenant = ? AND NOT is_bot "
            "AND (lower(coalesce(stitched_user, '')) LIKE ? OR lower(anonymous_id) LIKE ?) "
            "GROUP BY 1 ORDER BY last_seen DESC, 1 LIMIT ?", [tenant, like, like, limit])
    return {"ready": True, "q": q, "people": rows}


def person(t: Tables, tenant: str, person_id: str, limit: int) -> dict[str, Any]:
    with t.view() as v:
        if not v.has("sessions"):
            return {**NOT_READY, "person_id": person_id, "sessions": [], "high_level": []}
        who = "tenant = ? AND (stitched_user = ? OR anonymous_id = ?)"
        args = [tenant, person_id, person_id]
        ids = (("stitched_user", (person_id,)), ("anonymous_id", (person_id,)))
        v.read(Read("sessions", SESSION_COLUMNS, tenant, any_of=ids))
        sessions = v.query(
            f"SELECT session_id, session_index, epoch_ms(start_ts) AS start, epoch_ms(end_ts) AS end, duration_ms, "
            f"page_views, events, engaged_ms, landing_path, exit_path, referrer_host, device, browser, os, bounced "
            f"FROM sessions WHERE {who} ORDER BY start_ts DESC, session_id LIMIT ?", [*args, limit])
        pages = []
        if sessions:
            # a page view lies within its session: the shown sessions' days bound the files to read
            first = min(s["start"] for s in sessions)
            last = max(s["end"] for s in sessions)
            v.read(Read("pageviews", ("tenant", "session_id", "view_index", "view_ts", "path", "title", "engaged_ms",
                                      "max_scroll_pct"), tenant, first - first % DAY_MS, last - last % DAY_MS + DAY_MS,
                        any_of=(("session_id", tuple(s["session_id"] for s in sessions)),)))
            pages = v.query(
                "SELECT session_id, view_index, epoch_ms(view_ts) AS ts, path, title, engaged_ms, max_scroll_pct "
                "FROM pageviews WHERE tenant = ? AND session_id IN (SELECT unnest(?)) ORDER BY view_ts, session_id, view_index",
                [tenant, [s["session_id"] for s in sessions]])
        by_session: dict[str, list[dict[str, Any]]] = {}
        for p in pages:
            by_session.setdefault(p.pop("session_id"), []).append(p)
        for s in sessions:
            s["pages"] = by_session.get(s["session_id"], [])
        high = []
        if v.has("high_level_events"):
            v.read(Read("high_level_events", ("tenant", "name", "event_ts", "source", "session_id", "url", "stitched_user",
                                              "anonymous_id", "event_id"), tenant, any_of=ids))
            high = v.query(
                f"SELECT name, epoch_ms(event_ts) AS ts, source, session_id, url FROM high_level_events WHERE {who} "
                f"ORDER BY event_ts DESC, name, event_id LIMIT ?", [*args, limit])
        anon = v.query(f"SELECT DISTINCT anonymous_id FROM sessions WHERE {who} ORDER BY 1 LIMIT 50", args)
    return {"ready": True, "person_id": person_id, "anonymous_ids": [a["anonymous_id"] for a in anon],
            "sessions": sessions, "high_level": high}
