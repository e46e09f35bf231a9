"""The erasure API: ``POST /v1/erasures`` records a request to forget a person, ``GET
/v1/erasures/{id}`` shows where it stands.

Only a tenant's admin key may ask, and only for that tenant (the tenant comes from the key, never
from the body). ``{"person": id}`` or ``{"persons": [id, ...]}`` names the person by any of their
ids (anonymous ids, user id, person id): the whole identity graph is forgotten. The answer is 202
once the request, its suppression entry and its audit entry are durable in the lake; the
scheduler carries it out (``privacy/forget.py``), or ``beaconlake forget --pending`` at once.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from beaconlake.backends.storage import Storage, open_storage
from beaconlake.config import Settings
from beaconlake.errors import StorageError
from beaconlake.lake.privacy import IdHasher, id_hasher
from beaconlake.privacy.requests import BadErasure, request, status
from beaconlake.serve.auth import Caller, Forbidden, Keys, NotFound, guarded
from beaconlake.serve.params import BadParam

MAX_BODY_BYTES = 64 * 1024
_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


class ErasuresApi:
    def __init__(self, settings: Settings, keys: Keys) -> None:
        self.settings = settings
        self.keys = keys

    @functools.cached_property
    def storage(self) -> Storage:
        return open_storage(self.settings.storage)

    @functools.cached_property
    def hasher(self) -> IdHasher:
        return id_hasher(self.storage, self.settings.privacy.id_salt or None)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/erasures", guarded(self._tenant_admin, self.create), methods=["POST"]),
            Route("/v1/erasures/{request_id}", guarded(self._tenant_admin, self.show)),
        ]

    def _tenant_admin(self, req: Request) -> Caller:
        caller = self.keys.admin(req)
        if caller.tenant is None:
            raise Forbidden("an erasure is asked for with the tenant's admin_key: server.admin_key acts on no "
                            "tenant's data")
        return caller

    async def create(self, req: Request, caller: Caller) -> Any:
        body = await req.body()
        if len(body) > MAX_BODY_BYTES:
            raise BadParam("body", f"the body holds {len(body)} bytes; at most {MAX_BODY_BYTES}")
        try:
            doc = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise BadParam("body", f'the body is not JSON ({exc}); send {{"person": "<id>"}}') from None
        except RecursionError:  # as the event door: nesting deeper than the decoder goes is bad input, not a 500
            raise BadParam("body", 'the body is not JSON this service reads (nested too deep); '
                                   'send {"person": "<id>"}') from None
        if not isinstance(doc, dict) or ("person" in doc) == ("persons" in doc) or set(doc) - {"person", "persons"}:
            raise BadParam("body", 'send {"person": "<id>"} or {"persons": ["<id>", ...]}, and no other key')
        ids = [doc["person"]] if "person" in doc else doc["persons"]
        tenant = caller.tenant.id
        try:
            made = await run_in_threadpool(lambda: request(self.storage, self.hasher, self.settings, tenant, ids, "http"))
        except BadErasure as exc:
            raise BadParam("person" if "person" in doc else "persons", str(exc)) from None
        except StorageError as exc:
            return JSONResponse({"error": f"the request could not be recorded: {exc}", "reason": "storage_unavailable"},
                                status_code=503, headers={"retry-after": "5"})
        return JSONResponse({"id": made.id, "state": "pending", "requested_at_ms": made.requested_at_ms},
                            status_code=202, headers={"location": f"/v1/erasures/{made.id}"})

    async def show(self, req: Request, caller: Caller) -> Any:
        request_id = req.path_params["request_id"]
        if not _REQUEST_ID.fullmatch(request_id):
            raise BadParam("id", f"an erasure id is 32 hexadecimal digits, got {request_id[:80]!r}")
        found = await run_in_threadpool(status, self.storage, caller.tenant.id, request_id)
        if found is None:
            raise NotFound(f"no erasure {request_id} for this tenant")
        return found.to_json()
