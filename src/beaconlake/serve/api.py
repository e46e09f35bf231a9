"""The read API: ``GET /v1/stats``, ``GET /v1/high-level``, ``GET /v1/people/{id}/high-level``.

Every route takes the tenant from the read key (``Authorization: Bearer <read key>``; the
tenant's admin key reads too) and only ever queries that tenant: no parameter names a tenant,
so one tenant cannot ask for another's data (``beaconlake.serve.auth``). Missing or unknown
key: 401. Bad parameter: 400 naming the value and what is allowed. A person id may hold any
character, ``/`` included: the routes take the rest of the path, decoded once by the server
(``params.person_id_of``).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from beaconlake.backends.counters import Counters
from beaconlake.backends.counters.windows import GRAINS
from beaconlake.backends.highlevel import HighLevelIndex
from beaconlake.backends.highlevel.base import to_json
from beaconlake.config import TenantSettings
from beaconlake.serve import params
from beaconlake.serve.auth import Keys, guarded
from beaconlake.serve.params import PERSON_ID, BadParam, person_id_of
from beaconlake.units import iso, now_ms

__all__ = ["ReadApi"]

MAX_BUCKETS = 10_000
MAX_LIMIT = 1000
PERSON_ROUTE = f"/v1/people/{PERSON_ID}/high-level"


class ReadApi:
    """The realtime stage's read model (a worker's counters and high-level index) behind the keys."""

    def __init__(self, keys: Keys, counters: Counters, index: HighLevelIndex) -> None:
        self.keys = keys
        self.counters = counters
        self.index = index
        # Counters kept in this process are changed on the event loop: read them there too.
        self.inline_counters = counters.capabilities.in_process

    def routes(self) -> list[Route]:
        return [
            Route("/v1/stats", self._guard(self.stats)),
            Route("/v1/high-level", self._guard(self.high_level)),
            Route(PERSON_ROUTE, self._guard(self.person)),
        ]

    def _guard(self, handler: Any) -> Any:
        return guarded(self.keys.tenant, handler)

    async def stats(self, request: Request, tenant: TenantSettings) -> dict[str, Any]:
        q = request.query_params
        name = params.name(q.get("name"))
        by = params.choice(q.get("by"), "by", tuple(GRAINS), "minute")
        group = params.choice(q.get("group"), "group", ("path",), None)
        now = now_ms()
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
        person_id = person_id_of(request, PERSON_ROUTE)
        limit = params.integer(request.query_params.get("limit"), "limit", 1, MAX_LIMIT, 100)
        events = await run_in_threadpool(self.index.person, tenant.id, person_id, limit)
        return {"person_id": person_id, "events": [to_json(e) for e in events]}
