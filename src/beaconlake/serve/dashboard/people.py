"""The People view's data from the convert tables: find people, and a person's recent sessions
and high-level events. Profiles (traits, segment, interests, propensity) come from the profiles
API of the analyze stage, which the page asks directly."""

from __future__ import annotations

from typing import Any

from beaconlake.serve.dashboard.tables import Tables

NOT_READY = {"ready": False, "note": "no converted tables yet: the first convert run has not happened"}


def search(t: Tables, tenant: str, q: str, limit: int) -> dict[str, Any]:
    if "sessions" not in t.names():
        return {**NOT_READY, "people": []}
    like = f"%{q.lower()}%"
    rows = t.query(
        "SELECT coalesce(stitched_user, anonymous_id) AS person_id, max(stitched_user) AS user_id, "
        "count(*) AS sessions, sum(page_views) AS page_views, epoch_ms(min(start_ts)) AS first_seen, "
        "epoch_ms(max(end_ts)) AS last_seen FROM sessions WHERE tenant = ? AND NOT is_bot "
        "AND (lower(coalesce(stitched_user, '')) LIKE ? OR lower(anonymous_id) LIKE ?) "
        "GROUP BY 1 ORDER BY last_seen DESC LIMIT ?", [tenant, like, like, limit])
    return {"ready": True, "q": q, "people": rows}


def person(t: Tables, tenant: str, person_id: str, limit: int) -> dict[str, Any]:
    if "sessions" not in t.names():
        return {**NOT_READY, "person_id": person_id, "sessions": [], "high_level": []}
    who = "tenant = ? AND (stitched_user = ? OR anonymous_id = ?)"
    args = [tenant, person_id, person_id]
    sessions = t.query(
        f"SELECT session_id, session_index, epoch_ms(start_ts) AS start, epoch_ms(end_ts) AS end, duration_ms, "
        f"page_views, events, engaged_ms, landing_path, exit_path, referrer_host, device, browser, os, bounced "
        f"FROM sessions WHERE {who} ORDER BY start_ts DESC LIMIT ?", [*args, limit])
    ids = [s["session_id"] for s in sessions]
    pages = t.query(
        "SELECT session_id, view_index, epoch_ms(view_ts) AS ts, path, title, engaged_ms, max_scroll_pct "
        "FROM pageviews WHERE tenant = ? AND session_id IN (SELECT unnest(?)) ORDER BY view_ts", [tenant, ids]) if ids else []
    by_session: dict[str, list[dict[str, Any]]] = {}
    for p in pages:
        by_session.setdefault(p.pop("session_id"), []).append(p)
    for s in sessions:
        s["pages"] = by_session.get(s["session_id"], [])
    high = t.query(
        f"SELECT name, epoch_ms(event_ts) AS ts, source, session_id, url FROM high_level_events WHERE {who} "
        f"ORDER BY event_ts DESC LIMIT ?", [*args, limit]) if "high_level_events" in t.names() else []
    anon = t.query(f"SELECT DISTINCT anonymous_id FROM sessions WHERE {who} LIMIT 50", args)
    return {"ready": True, "person_id": person_id, "anonymous_ids": [a["anonymous_id"] for a in anon],
            "sessions": sessions, "high_level": high}
