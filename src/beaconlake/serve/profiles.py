"""The profiles read API: ``GET /v1/profiles/{id}``, ``GET /v1/profiles``, ``GET /v1/segments``.

The same rules as the rest of the read API (``beaconlake.serve.auth``): the tenant comes from the
read key and only that tenant is ever queried; a bad key is a 401, a bad parameter a 400 naming
the value and what is allowed; an unknown profile a 404. A profile lookup on SQLite runs on the
event loop: it is a couple of B-tree probes, cheaper than handing it to a thread.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from beaconlake.backends.profiles import TRAITS, ProfileStore, Search, open_profiles
from beaconlake.backends.profiles.base import SORT_KEYS
from beaconlake.config import Settings, TenantSettings
from beaconlake.serve import params
from beaconlake.serve.auth import Keys, NotFound, guarded
from beaconlake.serve.params import PERSON_ID, BadParam, person_id_of

MAX_LIMIT = 1000
PROFILE_ROUTE = f"/v1/profiles/{PERSON_ID}"
MAX_OFFSET = 100_000
MAX_Q = 200
_TRAIT = re.compile(r"^([a-z_]+)\s*(>=|<=|>|<|=)\s*([0-9]*\.?[0-9]+)$")
_SEGMENT = re.compile(r"^s[0-9]{1,3}$")


class ProfilesApi:
    """The profile store behind the keys; the store is opened on the first request, so a worker
    that serves no profile reads never opens it."""

    def __init__(self, settings: Settings, keys: Keys, store: ProfileStore | None = None) -> None:
        self.keys = keys
        self.settings = settings
        self._store = store

    @property
    def store(self) -> ProfileStore:
        if self._store is None:
            self._store = open_profiles(self.settings.profiles)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def routes(self) -> list[Route]:
        return [
            Route("/v1/profiles", self._guard(self.search)),
            Route(PROFILE_ROUTE, self._guard(self.profile)),
            Route("/v1/segments", self._guard(self.segments)),
        ]

    def _guard(self, handler: Any) -> Any:
        return guarded(self.keys.tenant, handler)

    async def profile(self, request: Request, tenant: TenantSettings) -> Response:
        person_id = person_id_of(request, PROFILE_ROUTE)
        store = self.store
        if store.capabilities.inline_reads:
            doc = store.get_json(tenant.id, person_id)
        else:
            doc = await run_in_threadpool(store.get_json, tenant.id, person_id)
        if doc is None:
            raise NotFound(f"no profile with person, user or anonymous id {person_id!r} in tenant {tenant.id!r} "
                           "(profiles appear after `beaconlake analyze` has run over the person's events)")
        return Response(doc, media_type="application/json")

    async def search(self, request: Request, tenant: TenantSettings) -> dict[str, Any]:
        q = request.query_params
        search = Search(
            segment=segment(q.get("segment")),
            traits=[trait(t) for t in q.getlist("trait") if t != ""],
            q=text(q.get("q")),
            limit=params.integer(q.get("limit"), "limit", 1, MAX_LIMIT, 50),
            offset=params.integer(q.get("offset"), "offset", 0, MAX_OFFSET, 0),
        )
        search.sort, search.descending = sort(q.get("sort"))
        docs, total = await run_in_threadpool(self.store.search, tenant.id, search)
        return {"profiles": docs, "total": total}

    async def segments(self, request: Request, tenant: TenantSettings) -> dict[str, Any]:
        return {"segments": await run_in_threadpool(self.store.segments, tenant.id)}


def segment(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _SEGMENT.fullmatch(value):
        raise BadParam("segment", f"segment={value[:80]!r} is not a segment id; ids are s1, s2, ... (GET /v1/segments)")
    return value


def trait(value: str) -> tuple[str, str, float]:
    m = _TRAIT.match(value.strip())
    if m is None:
        raise BadParam("trait", f"trait={value[:80]!r}: write it as <trait><op><number>, e.g. engagement>0.7; "
                                f"ops > >= < <= =")
    name, op, number = m.group(1), m.group(2), float(m.group(3))
    if name not in TRAITS:
        raise BadParam("trait", f"trait={value[:80]!r}: unknown trait {name!r}; traits are {', '.join(TRAITS)}")
    if not 0.0 <= number <= 1.0:
        raise BadParam("trait", f"trait={value[:80]!r}: scores are between 0 and 1, got {number}")
    return name, op, number


def text(value: str | None) -> str | None:
    if value is None or value.strip() == "":
        return None
    if len(value) > MAX_Q:
        raise BadParam("q", f"q of {len(value)} characters; at most {MAX_Q}")
    return value


def sort(value: str | None) -> tuple[str, bool]:
    """``key`` ascending or ``-key`` descending; default ``-last_seen`` (most recently active first)."""
    if value is None or value == "":
        return "last_seen", True
    key, descending = (value[1:], True) if value.startswith("-") else (value, False)
    if key not in SORT_KEYS:
        raise BadParam("sort", f"sort={value[:80]!r} is not allowed; use one of {', '.join(SORT_KEYS)}, "
                               "with a leading '-' for descending")
    return key, descending
