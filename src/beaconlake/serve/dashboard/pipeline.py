"""The Pipeline view as one tenant sees it: its own figures and the runs that covered it.

The server-wide view (``server.admin_key``) shows the process counters, which count every
tenant, and the whole run history, whose analyze summaries list every tenant with its profile
counts. A tenant's read or admin key gets this view instead: its own accepted and rejected
counts (the router counts them per tenant once they are durable), and the runs that included
it, stripped of every other tenant's id and of the figures that sum over other tenants (a run
of this tenant alone keeps them: they are its own).
"""

from __future__ import annotations

import re
from typing import Any

from beaconlake.config import Settings
from beaconlake.backends.coordination import RunLog
from beaconlake.telemetry import Snapshot
from beaconlake.units import now_ms

ACCEPTED = "beaconlake_tenant_events_accepted_total"
REJECTED = "beaconlake_tenant_events_rejected_total"
SERVER_TRIGGER = "requested (server admin)"
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_RUN_FIELDS = ("run_id", "node", "started_at", "finished_at", "status", "stage", "seconds")
# What a tenant sees of a node: who and whether it is alive, not figures summed over every tenant.
_NODE_FIELDS = ("node", "role", "seen_ms", "age_ms")


def _labels(encoded: str) -> dict[str, str]:
    return dict(_LABEL.findall(encoded))


def per_tenant(snap: Snapshot) -> dict[str, dict[str, Any]]:
    """{tenant: {"accepted": n, "rejected": {reason: n}}} from the per-tenant counters."""
    out: dict[str, dict[str, Any]] = {}
    for encoded, v in snap.counters.get(ACCEPTED, {}).items():
        tenant = _labels(encoded).get("tenant", "?")
        out.setdefault(tenant, {"accepted": 0, "rejected": {}})["accepted"] += int(v)
    for encoded, v in snap.counters.get(REJECTED, {}).items():
        labels = _labels(encoded)
        rejected = out.setdefault(labels.get("tenant", "?"), {"accepted": 0, "rejected": {}})["rejected"]
        rejected[labels.get("reason", "?")] = rejected.get(labels.get("reason", "?"), 0) + int(v)
    return out


def trigger_for(trigger: str, tenant: str) -> str:
    """What started a run, without another tenant's id: ``requested (b)`` reads ``requested``."""
    own = (f"requested ({tenant})", SERVER_TRIGGER)
    parts = [p if "(" not in p or p in own else p.split(" (", 1)[0] for p in trigger.split(", ")]
    return ", ".join(dict.fromkeys(parts))


def run_for(run: dict[str, Any], tenant: str) -> dict[str, Any] | None:
    """A run as ``tenant`` may see it, or None when the run did not include the tenant."""
    covered = run.get("tenants")
    if covered is not None and tenant not in covered:
        return None
    own = covered == [tenant]  # a run of this tenant alone: every figure of it is the tenant's
    out = {k: run.get(k) for k in _RUN_FIELDS}
    out["trigger"] = trigger_for(run.get("trigger") or "", tenant)
    out["tenants"] = [tenant] if own else None
    out["events"] = run.get("events") if own else None
    out["new_files"] = run.get("new_files") if own else None
    out["quarantined"] = run.get("quarantined") if own else None
    analyze = run.get("analyze")
    if isinstance(analyze, dict) and isinstance(analyze.get("tenants"), list):
        mine = [t for t in analyze["tenants"] if isinstance(t, dict) and t.get("tenant") == tenant]
        out["analyze"] = {"tenants": mine, **({"seconds": analyze.get("seconds")} if own else {})}
    else:
        out["analyze"] = None
    if run.get("error"):
        out["error"] = run["error"] if own else (
            "this run covered every tenant; its error is on the server-wide Pipeline view (server.admin_key)")
    else:
        out["error"] = None
    return out


def nodes_for_tenant(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes as a tenant may see them: name, role, last heartbeat, and whether it is the
    active jobs node; their figures (ingest rate, spool, lag) count every tenant's events."""
    return [{**{k: n.get(k) for k in _NODE_FIELDS}, "jobs_active": bool((n.get("info") or {}).get("jobs_active"))}
            for n in nodes]


def tenant_view(settings: Settings, snap: Snapshot, runs: RunLog, tenant: str, can_run: bool) -> dict[str, Any]:
    mine = per_tenant(snap).get(tenant, {"accepted": 0, "rejected": {}})
    state = runs.state()
    history = [r for r in (run_for(r, tenant) for r in runs.runs(settings.schedule.keep_runs)) if r is not None]
    return {
        "scope": "tenant", "tenant": tenant, "now": now_ms(), "can_run": can_run,
        "counters": {ACCEPTED: mine["accepted"], REJECTED: sum(mine["rejected"].values())},
        "rejected": mine["rejected"],
        "schedule": {"enabled": settings.schedule.enabled, "interval_mins": settings.schedule.convert_interval_mins,
                     "next_run_at": state.get("next_run_at"), "requested": runs.requested(tenant)},
        "runs": history[:20],
    }
