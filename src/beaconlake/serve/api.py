"""The read API: ``GET /v1/stats``, ``GET /v1/high-level``, ``GET /v1/people/{id}/high-level``.

Every route takes the tenant from the read key (``Authorization: Bearer <read key>``) and
only ever queries that tenant: no parameter names a tenant, so one tenant cannot ask for
another's data. Missing or unknown key: 401. Bad parameter: 400 naming the value and what
is allowed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from beaconlake.backends.counters import Counters
from beaconlake.backends.counters.memory import MemoryCounters
from beaconlake.backends.highlevel import HighLevelIndex
from beaconlake.backends.highlevel.base import to_json
from beaconlake.config import Settings, TenantSettings
from beaconlake.realtime.aggregate import GRAINS
from beaconlake.serve import params
from beaconlake.serve.params import BadParam

MAX_BUCKETS = 10_000
MAX_LIMIT = 1000


class Unauthorized(Exception):
    pass


class NotFound(Exception):
    pass


def guarded(tenant_of: Callable[[Request], TenantSettings], handler: Any, headers: dict[str, str] | None = None) -> Any:
    """A route endpoint that finds the tenant from the read key, then answers ``handler(request,
    tenant)`` as JSON (or as the Response it returns): 401, 400 naming the parameter, or 404."""

    async def endpoint(request: Request) -> Response:
        try:
            tenant = tenant_of(request)
            result = await handler(request, tenant)
            return result if isinstance(result, Response) else JSONResponse(result, headers=headers)
        except Unauthorized as exc:
            return JSONResponse({"error": str(exc), "reason": "unauthorized"}, status_code=401,
                                headers={"www-authenticate": 'Bearer realm="beaconlake"'})
        except BadParam as exc:
            return JSONResponse({"error": exc.error, "reason": "bad_parameter", "parameter": exc.param}, status_code=400)
        except NotFound as exc:
            return JSONResponse({"error": str(exc), "reason": "not_found"}, status_code=404)

    return endpoint


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


class ReadApi:
    def __init__(self, settings: Settings, counters: Counters, index: HighLevelIndex) -> None:
        self.tenants = [(t.read_key.encode(), t) for t in settings.tenants]
        self.counters = counters
        self.index = index
        # The memory backend's live windows are mutated on the event loop: read them there too.
        self.inline_counters = isinstance(counters, MemoryCounters)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/stats", self._guard(self.stats)),
            Route("/v1/high-level", self._guard(self.high_level)),
            Route("/v1/people/{person_id}/high-level", self._guard(self.person)),
        ]

    def tenant(self, request: Request) -> TenantSettings:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("no read key: send the header Authorization: Bearer <the tenant's read_key>")
        given = key.strip().encode()
        for read_key, tenant in self.tenants:
            if hmac.compare_digest(given, read_key):  # no timing hints about a secret
                return tenant
        raise Unauthorized("unknown read key; use the tenant's read_key (the write key cannot read)")

    def _guard(self, handler: Any) -> Any:
        return guarded(self.tenant, handler)

    async def stats(self, request: Request, tenant: TenantSettings) -> dict[str, Any]:
        q = request.query_params
        name = params.name(q.get("name"))
        by = params.choice(q.get("by"), "by", tuple(GRAINS), "minute")
        group = params.choice(q.get("group"), "group", ("path",), None)
        now = params.now_ms()
        end = params.when(q.get("to"), "to", now)
        start = params.when(q.get("from"), "from", end - GRAINS[by] * 60)
        if start >= end:
            raise BadParam("from", f"from={start} must be before to={end}")
        if (end - start) // GRAINS[by] > MAX_BUCKETS:
            raise BadParam("by", f"{(end - start) // GRAINS[by]} {by} buckets between from and to, limit {MAX_BUCKETS}; "
                                 "use a coarser by or a shorter range")
        args = (tenant.id, name, start, end, by, group == "path")
        rows = self.counters.query(*args) if self.inline_counters else await run_in_threadpool(self.counters.query, *args)
        for r in rows:
            r["start_iso"] = iso(r["start"])
        return {"name": name, "by": by, "group": group, "from": start, "to": end,
                "distinct_standard_error": round(self.counters.standard_error, 5), "rows": rows}

    async def high_level(self, request: Request, tenant: TenantSettings) -> dict[str, Any]:
        q = request.query_params
        name = params.name(q.get("name"), required=False)
        start = params.when(q.get("from"), "from", None)
        end = params.when(q.get("to"), "to", None)
        limit = params.integer(q.get("limit"), "limit", 1, MAX_LIMIT, 100)
        counts = await run_in_threadpool(self.index.counts, tenant.id, name, start, end)
        events = await run_in_threadpool(self.index.search, tenant.id, name, start, end, limit)
        return {"name": name, "from": start, "to": end, "counts": counts, "events": [to_json(e) for e in events]}

    async def person(self, request: Request, tenant: TenantSettings) -> dict[str, Any]:
        person_id = request.path_params["person_id"]
        if not 0 < len(person_id) <= 128:
            raise BadParam("person_id", f"person id of {len(person_id)} characters; 1 to 128 allowed")
        limit = params.integer(request.query_params.get("limit"), "limit", 1, MAX_LIMIT, 100)
        events = await run_in_threadpool(self.index.person, tenant.id, person_id, limit)
        return {"person_id": person_id, "events": [to_json(e) for e in events]}
