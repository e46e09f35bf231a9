"""Who a request's bearer key belongs to, and the one wrapper every read and admin route uses.

The keys (DESIGN.md, "Keys"): a tenant's write key only writes and is no key here; its read
key reads that tenant's data; its admin key (optional) reads the same and may also act for
that tenant (ask for a convert + analyze run now); ``server.admin_key`` (optional) sees the
server-wide views and may run every tenant, but reads no tenant's data. No route takes a tenant
from a parameter, so no key of one tenant reaches another's data.

A key is compared with every configured key, each in constant time (``hmac.compare_digest``),
so the answer's timing says nothing about how much of a secret was guessed, nor which kind of
key matched. Missing or unknown key: 401; a known key without the right: 403.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from beaconlake.config import Settings, TenantSettings
from beaconlake.errors import BackendUnavailable
from beaconlake.serve.params import BadParam

log = logging.getLogger(__name__)
BACKEND_RETRY_AFTER_SECS = 5
READ_KEY_HINT = "send the header Authorization: Bearer <the tenant's read_key>"


class Unauthorized(Exception):
    """No key, or a key that is none of the configured read and admin keys: 401."""


class Forbidden(Exception):
    """A known key that does not carry the right the route needs: 403."""


class NotFound(Exception):
    pass


@dataclass(frozen=True)
class Caller:
    tenant: TenantSettings | None  # None: the server's admin, who is no tenant
    admin: bool

    @property
    def server(self) -> bool:
        return self.tenant is None


class Keys:
    """The read and admin keys of a configuration, resolved once at start-up."""

    def __init__(self, settings: Settings) -> None:
        self._keys: list[tuple[bytes, Caller]] = []
        for t in settings.tenants:
            self._keys.append((t.read_key.encode(), Caller(t, admin=False)))
            if t.admin_key is not None:
                self._keys.append((t.admin_key.encode(), Caller(t, admin=True)))
        if settings.server.admin_key is not None:
            self._keys.append((settings.server.admin_key.encode(), Caller(None, admin=True)))

    def caller(self, request: Request) -> Caller:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized(f"no read key: {READ_KEY_HINT}")
        given = key.strip().encode()
        found = None
        for known, caller in self._keys:  # every key, even after a match: no timing hint of which
            if hmac.compare_digest(given, known) and found is None:
                found = caller
        if found is None:
            raise Unauthorized("unknown read key; use the tenant's read_key or admin_key (the write key cannot read)")
        return found

    def tenant(self, request: Request) -> TenantSettings:
        """The tenant whose data the request may read: its read key or its admin key."""
        caller = self.caller(request)
        if caller.tenant is None:
            raise Forbidden("server.admin_key reads no tenant's data; use the tenant's read_key or admin_key")
        return caller.tenant

    def admin(self, request: Request) -> Caller:
        """A caller who may act: a tenant's admin key (for that tenant) or server.admin_key (for all)."""
        caller = self.caller(request)
        if not caller.admin:
            raise Forbidden("this needs an admin key: the tenant's admin_key acts for that tenant, server.admin_key "
                            "for every tenant; a read key only reads")
        return caller


def guarded(who: Callable[[Request], Any], handler: Any, headers: dict[str, str] | None = None) -> Any:
    """A route endpoint that finds the caller with ``who`` (``Keys.tenant``, ``Keys.caller`` or
    ``Keys.admin``), then answers ``handler(request, caller)`` as JSON (or the Response it
    returns); 401, 403, 400 naming the parameter, 404, or 503 when a store it reads is down, each
    with a JSON body that says why."""

    async def endpoint(request: Request) -> Response:
        try:
            caller = who(request)
            result = await handler(request, caller)
            return result if isinstance(result, Response) else JSONResponse(result, headers=headers)
        except Unauthorized as exc:
            return JSONResponse({"error": str(exc), "reason": "unauthorized"}, status_code=401,
                                headers={"www-authenticate": 'Bearer realm="beaconlake"'})
        except Forbidden as exc:
            return JSONResponse({"error": str(exc), "reason": "forbidden"}, status_code=403)
        except BadParam as exc:
            return JSONResponse({"error": exc.error, "reason": "bad_parameter", "parameter": exc.param}, status_code=400)
        except NotFound as exc:
            return JSONResponse({"error": str(exc), "reason": "not_found"}, status_code=404)
        except BackendUnavailable as exc:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            return JSONResponse({"error": str(exc), "reason": "backend_unavailable"}, status_code=503,
                                headers={"retry-after": str(BACKEND_RETRY_AFTER_SECS)})

    return endpoint
