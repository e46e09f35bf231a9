"""The dashboard's routes: the page at ``/``, its static files, and the JSON endpoints.

Every ``/v1/dashboard/...`` endpoint takes the tenant from the read key like the read API
(``Authorization: Bearer <read key>``: 401 without it, 400 naming a bad parameter), through the
one key check of ``beaconlake.serve.auth``. The Pipeline view is the one with two scopes: a
tenant's key sees that tenant's part of it (``dashboard.pipeline``), ``server.admin_key`` the
whole server. A run now needs an admin key: the tenant's (a run of that tenant) or the
server's (every tenant); a read key gets 403. Queries over the tables run in a thread: DuckDB
releases the GIL, the event loop keeps acknowledging events.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from beaconlake.config import Settings, TenantSettings
from beaconlake.serve.dashboard import funnel, live, people, pipeline, traffic
from beaconlake.serve.dashboard.tables import Tables
from beaconlake.ingest import spool
from beaconlake.backends.coordination import Coordination, RunLog, open_coordination
from beaconlake.backends.highlevel import HighLevelIndex
from beaconlake.serve import params
from beaconlake.serve.auth import Caller, Forbidden, Keys, guarded
from beaconlake.serve.params import PERSON_ID, BadParam, person_id_of
from beaconlake.telemetry import Metrics
from beaconlake.units import DAY_MS, now_ms

STATIC = Path(__file__).resolve().parent / "static"
MAX_RANGE_DAYS = 400
PERSON_ROUTE = f"/v1/dashboard/people/{PERSON_ID}"
QUARANTINE_SHOWN = 50  # the Pipeline view lists at most this many quarantined raw files
PARKED_SHOWN = 50  # and the server-wide view this many parked spool segments
PIPELINE_METRICS = (
    "beaconlake_events_received_total", "beaconlake_events_accepted_total", "beaconlake_events_delivered_total",
    "beaconlake_rejections_delivered_total", "beaconlake_segments_delivered_total", "beaconlake_delivery_failures_total",
    "beaconlake_spooled_bytes_total", "beaconlake_stats_events_total", "beaconlake_stats_late_events_total",
)


def _timed(handler: Any) -> Any:
    async def wrapped(*args: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        body = await handler(*args)
        body["server_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return body

    return wrapped


class Dashboard:
    """``index``: the worker's high-level index, for the Live view's counts; None without realtime."""

    def __init__(self, settings: Settings, keys: Keys, metrics: Metrics, index: HighLevelIndex | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.keys = keys
        self.index = index
        self.tables = Tables(settings)
        self._runs: RunLog | None = None
        self._coordination: Coordination | None = None
        self._storage: Any = None  # the lake's storage, opened when a view first reads the lake

    @property
    def coordination(self) -> Coordination:
        """The deployment's run log and node heartbeats (any node's dashboard sees every node's)."""
        if self._coordination is None:  # opened on first use: a worker that never serves the dashboard never creates it
            s = self.settings
            self._coordination = open_coordination(s.coordination, run_dir=s.run_path, node=s.node.name)
        return self._coordination

    @property
    def runs(self) -> RunLog:
        if self._runs is None:
            self._runs = self.coordination.run_log(self.settings.schedule.keep_runs)
        return self._runs

    def routes(self) -> list[Route | Mount]:
        g, keys = self._guard, self.keys
        return [
            Route("/", self.page),
            Mount("/dashboard/static", app=StaticFiles(directory=STATIC), name="dashboard-static"),
            Route("/v1/dashboard/session", g(self.session, keys.caller)),
            Route("/v1/dashboard/live", g(self.live)),
            Route("/v1/dashboard/traffic", g(self.traffic)),
            Route("/v1/dashboard/sequences", g(self.sequences)),
            Route("/v1/dashboard/people", g(self.people)),
            Route(PERSON_ROUTE, g(self.person)),
            Route("/v1/dashboard/pipeline", g(self.pipeline, keys.caller)),
            Route("/v1/dashboard/pipeline/run", g(self.request_run, keys.admin), methods=["POST"]),
        ]

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    def _guard(self, handler: Any, who: Any = None) -> Any:
        """``who``: how the key is checked; by default, a tenant's read (or admin) key for its data."""
        return guarded(who or self.keys.tenant, _timed(handler), headers={"cache-control": "no-store"})

    def _range(self, request: Request, default_days: int) -> tuple[int, int, str]:
        q = request.query_params
        now = now_ms()
        end = params.when(q.get("to"), "to", now)
        start = params.when(q.get("from"), "from", end - default_days * DAY_MS)
        if start >= end:
            raise BadParam("from", f"from={start} must be before to={end}")
        if end - start > MAX_RANGE_DAYS * DAY_MS:
            raise BadParam("from", f"the range is {(end - start) / DAY_MS:.0f} days, limit {MAX_RANGE_DAYS}")
        by = params.choice(q.get("by"), "by", ("hour", "day"), "hour" if end - start <= 3 * DAY_MS else "day")
        if by == "hour" and end - start > 31 * DAY_MS:
            raise BadParam("by", f"by=hour over {(end - start) / DAY_MS:.0f} days: at most 31 days; use by=day")
        return start, end, by

    # -- views ----------------------------------------------------------------------------------

    async def session(self, request: Request, caller: Caller) -> dict[str, Any]:
        """Who is signed in and what this server offers, so the page asks only for what exists."""
        tenant = caller.tenant
        if tenant is None:
            raise Forbidden("server.admin_key opens no tenant's dashboard: sign in with a tenant's read_key or "
                            "admin_key (the server-wide Pipeline view is GET /v1/dashboard/pipeline with this key)")
        # open the tables' views now, at login, rather than in the first view the person opens
        await run_in_threadpool(self.tables.names)
        paths = {getattr(r, "path", None) for r in request.app.routes}
        return {"tenant": tenant.id, "role": "admin" if caller.admin else "read",
                "sequences": [q.name for q in tenant.sequences],
                "profiles_api": "/v1/profiles" in paths and "/v1/segments" in paths}

    async def live(self, request: Request, tenant: TenantSettings) -> dict[str, Any]:
        counts = self.index.counts if self.index is not None else None
        return await run_in_threadpool(lambda: live.live(self.storage, tenant.id, counts))

    async def traffic(self, request: Request, tenant: TenantSettings) -> dict[str, Any]:
        start, end, by = self._range(request, 7)
        return await run_in_threadpool(traffic.traffic, self.tables, tenant.id, start, end, by,
                                      self.settings.convert.max_session_hours)

    async def sequences(self, request: Request, tenant: TenantSettings) -> dict[str, Any]:
        start, end, _ = self._range(request, 7)
        return await run_in_threadpool(funnel.funnels, self.tables, tenant, start, end)

    async def people(self, request: Request, tenant: TenantSettings) -> dict[str, Any]:
        q = request.query_params.get("q", "")
        if len(q) > 128:
            raise BadParam("q", f"q is {len(q)} characters long, limit 128")
        limit = params.integer(request.query_params.get("limit"), "limit", 1, 500, 50)
        return await run_in_threadpool(people.search, self.tables, tenant.id, q, limit)

    async def person(self, request: Request, tenant: TenantSettings) -> dict[str, Any]:
        person_id = person_id_of(request, PERSON_ROUTE)
        limit = params.integer(request.query_params.get("limit"), "limit", 1, 200, 20)
        return await run_in_threadpool(people.person, self.tables, tenant.id, person_id, limit)

    async def pipeline(self, request: Request, caller: Caller) -> dict[str, Any]:
        if caller.tenant is not None:  # a tenant's key: its own figures, runs and quarantined files only
            tenant_id = caller.tenant.id

            def tenant_view() -> dict[str, Any]:
                view = pipeline.tenant_view(self.settings, self.metrics.gather(), self.runs, tenant_id, caller.admin)
                nodes = pipeline.nodes_for_tenant(self.coordination.nodes())
                return {**view, "nodes": nodes, "quarantined": self._quarantined(tenant_id)}

            return await run_in_threadpool(tenant_view)

        def gather() -> dict[str, Any]:
            snap = self.metrics.gather()
            counters = {m: sum(snap.counters.get(m, {}).values()) for m in PIPELINE_METRICS}
            rejected = {k.partition('"')[2].rstrip('"') or "?": v
                        for k, v in snap.counters.get("beaconlake_events_rejected_total", {}).items()}
            lag = max(snap.gauges.get("beaconlake_delivery_lag_seconds", {}).values(), default=0.0)
            state = self.runs.state()
            tenants = pipeline.per_tenant(snap)
            return {
                "scope": "server", "can_run": True,
                "tenants": {t.id: tenants.get(t.id, {"accepted": 0, "rejected": {}}) for t in self.settings.tenants},
                "now": now_ms(), "counters": counters, "rejected": rejected, "delivery_lag_seconds": lag,
                "spool_undelivered_bytes": spool.undelivered_bytes(self.settings.spool_path),
                "schedule": {"enabled": self.settings.schedule.enabled,
                             "interval_mins": self.settings.schedule.convert_interval_mins,
                             "next_run_at": state.get("next_run_at"), "requested": self.runs.requested()},
                "runs": self.runs.runs(20),
                "nodes": self.coordination.nodes(),  # every node's last heartbeat and figures
                "active_jobs_node": state.get("active_node"),
                "quarantined": self._quarantined(None),
                # spool segments delivery parked (damaged, or failing): reports from spool/corrupt/
                "parked": spool.parked_reports(self.settings.spool_path, PARKED_SHOWN),
            }

        return await run_in_threadpool(gather)

    @property
    def storage(self) -> Any:
        """The lake's storage, opened on first use (in the thread pool: opening may reach the network)."""
        if self._storage is None:
            from beaconlake.backends.storage import open_storage

            self._storage = open_storage(self.settings.storage)
        return self._storage

    def _quarantined(self, tenant: str | None) -> list[dict[str, Any]]:
        """The raw files (of ``tenant``; None: every tenant's) that convert moved to the lake's
        quarantine/, newest first."""
        from beaconlake.convert import quarantine

        return quarantine.listing(self.storage, tenant, limit=QUARANTINE_SHOWN)

    async def request_run(self, request: Request, caller: Caller) -> dict[str, Any]:
        """A convert + analyze run now: of the admin key's tenant, or of every tenant for server.admin_key."""
        tenant = caller.tenant.id if caller.tenant is not None else None
        who = pipeline.SERVER_TRIGGER if tenant is None else f"requested ({tenant})"
        await run_in_threadpool(self.runs.request, who, tenant)
        return {"requested": True, "tenants": None if tenant is None else [tenant],
                "note": "the active jobs node's scheduler starts it within a second, or after the run in progress"}
