"""The Sequences view: each high-level definition as a funnel over the ``events`` table.

A person reaches step k when their events (by stitched user, else anonymous id) hold steps 1..k
in order, each meeting its ``where`` and ``same``, the k-th no later than ``within_secs`` after
the first: the detector's rules (docs/tracker.md) without ``not_followed_by``, which decides
whether a complete match counts, not how far people got. The count of completed matches, with
``not_followed_by`` applied, is the ``high_level_events`` table's.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from beaconlake.config import SequenceDefinition, SequenceStep, TenantSettings
from beaconlake.convert.scan import Read
from beaconlake.serve.dashboard.tables import Tables
from beaconlake.realtime.predicates import TOP_FIELDS, json_eq, test

MAX_EVENTS_PER_PERSON = 500  # keeps the pairwise search bounded for a very busy person
_json = msgspec.json.decode


def _field(ev: dict[str, Any], field: str) -> Any:
    if field.startswith("props."):
        node: Any = ev["props"]
        for part in field[6:].split("."):
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        return node
    return ev.get(field) if field in TOP_FIELDS else None


def _matches(ev: dict[str, Any], step: SequenceStep, prev: dict[str, Any] | None) -> bool:
    if ev["name"] != step.name or not all(test(_field(ev, p.field), p) for p in step.where):
        return False
    if prev is not None:
        for f in step.same:
            v = _field(ev, f)
            if v is None or not json_eq(v, _field(prev, f)):
                return False
    return True


def depth(events: list[dict[str, Any]], q: SequenceDefinition) -> int:
    """How many steps of ``q`` the time-ordered ``events`` of one person reach."""
    best, n, window = 0, len(q.steps), q.within_secs * 1000
    for i, first in enumerate(events):
        if not _matches(first, q.steps[0], None):
            continue
        k, prev = 1, first
        for ev in events[i + 1:]:
            if k == n or ev["ts"] - first["ts"] > window:
                break
            if _matches(ev, q.steps[k], prev):
                k, prev = k + 1, ev
        best = max(best, k)
        if best == n:
            break
    return best


EVENT_COLUMNS = ("tenant", "stitched_user", "anonymous_id", "name", "event_ts", "event_id", "props", "url", "title", "level",
                 "referrer", "user_id", "session_id")


def funnels(t: Tables, tenant: TenantSettings, start: int, end: int) -> dict[str, Any]:
    """Reads the range's days of ``events`` (only the steps' event names, only the columns the
    rules look at) and of ``high_level_events``."""
    with t.view() as v:
        if not v.has("events"):
            return {"ready": False, "note": "no converted tables yet: the first convert run has not happened", "funnels": []}
        if tenant.sequences:
            names = tuple(sorted({s.name for q in tenant.sequences for s in q.steps}))
            v.read(Read("events", EVENT_COLUMNS, tenant.id, start, end, any_of=(("name", names),)))
            if v.has("high_level_events"):
                v.read(Read("high_level_events", ("tenant", "name", "event_ts", "stitched_user", "anonymous_id"),
                            tenant.id, start, end, any_of=(("name", tuple(q.name for q in tenant.sequences)),)))
        out = [_funnel(v, tenant, q, start, end) for q in tenant.sequences]
    return {"ready": True, "from": start, "to": end, "funnels": out}


def _columns(q: SequenceDefinition) -> tuple[list[str], bool]:
    """The event columns the rules of ``q`` read, and whether they read props (decoded per row:
    the view's main cost, so only when a rule looks inside)."""
    fields = {p.field for s in q.steps for p in s.where} | {f for s in q.steps for f in s.same}
    return sorted(f for f in fields if f in TOP_FIELDS and f != "name"), any(f.startswith("props.") for f in fields)


def _funnel(v: Any, tenant: TenantSettings, q: SequenceDefinition, start: int, end: int) -> dict[str, Any]:
    names = sorted({s.name for s in q.steps})
    tops, with_props = _columns(q)
    read = ", ".join(["props"] * with_props + tops)
    rows = v.query(
        f"SELECT coalesce(stitched_user, anonymous_id) AS person, name, epoch_ms(event_ts) AS ts{', ' if read else ''}{read} "
        "FROM events WHERE tenant = ? AND name IN (SELECT unnest(?)) "
        "AND event_ts >= make_timestamptz(? * 1000) AND event_ts < make_timestamptz(? * 1000) "
        "ORDER BY person, event_ts, event_id", [tenant.id, names, start, end])
    people: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        mine = people.setdefault(r["person"], [])
        if len(mine) < MAX_EVENTS_PER_PERSON:
            if with_props:
                try:  # msgspec, as the detector decodes props
                    r["props"] = _json(r["props"] or "{}")
                except ValueError:
                    r["props"] = {}
            mine.append(r)
    reached = [0] * len(q.steps)
    for evs in people.values():
        for k in range(depth(evs, q)):
            reached[k] += 1
    steps = []
    for k, s in enumerate(q.steps):
        steps.append({
            "step": k + 1, "name": s.name, "where": [f"{p.field} {p.op}" + ("" if p.op == "exists" else f" {json.dumps(p.value)}") for p in s.where],
            "same": list(s.same), "people": reached[k],
            "conversion": round(reached[k] / reached[0], 4) if reached[0] else None,
            "drop_off": reached[k - 1] - reached[k] if k else None,
        })
    done = v.query(
        "SELECT count(*) AS events, count(DISTINCT coalesce(stitched_user, anonymous_id)) AS people "
        "FROM high_level_events WHERE tenant = ? AND name = ? "
        "AND event_ts >= make_timestamptz(? * 1000) AND event_ts < make_timestamptz(? * 1000)",
        [tenant.id, q.name, start, end])[0] if v.has("high_level_events") else {"events": 0, "people": 0}
    return {"name": q.name, "within_secs": q.within_secs, "steps": steps,
            "not_followed_by": q.not_followed_by.name if q.not_followed_by else None, "completed": done}
