"""Segment's HTTP tracking API, as Segment's and RudderStack's libraries call it.

Routes: ``POST /v1/batch`` (every server library; analytics-next's batching strategy posts the
same body to ``/v1/b``), the single calls ``/v1/track``, ``/v1/page``, ``/v1/screen``,
``/v1/identify``, ``/v1/group``, ``/v1/alias`` and analytics-next's short forms ``/v1/t``,
``/v1/p``, ``/v1/s``, ``/v1/i``, ``/v1/g``, ``/v1/a``.

Auth as Segment's: HTTP Basic with the write key as user name (the password is ignored), or
``writeKey`` in the body. Limits and answers as Segment's: 32 KB a message, 500 KB a request
(after gzip), ``400 {"success": false, "code", "message"}`` for a body that is not JSON or not a
batch, ``200 {"success": true}`` otherwise. Unlike Segment, which drops a bad message silently,
each rejected message is kept in ``lake/rejected`` and listed in the answer (``rejected``); a
request whose every message is rejected gets a 400, so the sender sees it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from typing import Any

import msgspec

from beaconlake.ingest.collector.events import JSON_TYPES, EventRequest, Headers, Refused
from beaconlake.ingest.collector.foreign import ForeignDoor
from beaconlake.ingest.collector.validate import TenantRules, clean_text, excerpt
from beaconlake.ingest.protocols import segment
from beaconlake.ingest.protocols.common import Mapped, Unmappable, iso_ms
from beaconlake.types import Rejection

log = logging.getLogger(__name__)
SOURCE = "segment"
_json = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
ALLOWED_HEADERS = "content-type, content-encoding, authorization, x-retry-count"


class SegmentApi:
    def __init__(self, door: ForeignDoor) -> None:
        self.door = door
        self.rules = door.events.rules

    def fast_routes(self) -> dict[str, Any]:
        routes: dict[str, Any] = {}
        for path in segment.BATCH_ROUTES:
            routes[path] = self._handler(None)
        for path, kind in segment.ROUTE_TYPES.items():
            routes[path] = self._handler(kind)
        return routes

    def _handler(self, kind: str | None) -> Any:
        async def handler(req: EventRequest) -> tuple[int, Headers, bytes]:
            return await self.handle(req, kind)
        return handler

    async def handle(self, req: EventRequest, kind: str | None) -> tuple[int, Headers, bytes]:
        """``kind``: the message type a single-call route implies; None on a batch route."""
        metrics = self.door.metrics
        start = time.perf_counter()
        origin = req.header("origin")
        cors: Headers = [("access-control-allow-origin", origin), ("access-control-expose-headers", "Retry-After"),
                         ("vary", "Origin")] if origin else []
        try:
            if req.method == "OPTIONS":
                status, headers, body = 204, cors + [("access-control-allow-methods", "POST, OPTIONS"),
                                                      ("access-control-allow-headers", ALLOWED_HEADERS),
                                                      ("access-control-max-age", "86400")], b""
            elif req.method != "POST":
                raise Refused(405, "method", f"{clean_text(req.method)[:16]!r} is not allowed here; POST Segment messages",
                              [("allow", "POST, OPTIONS")])
            else:
                status, body = await self._post(req, kind, origin)
                headers = cors
        except Refused as exc:
            status, headers = exc.status, cors + exc.headers
            metrics.inc("beaconlake_requests_refused_total", reason=exc.reason)
            body = _json.encode({"success": False, "code": exc.reason, "message": exc.error})
        except Exception:  # a bug, not the input: 500, so the SDK keeps its messages and retries
            log.exception("Segment endpoint failed on a %s request", req.method)
            status, headers = 500, cors
            body = _json.encode({"success": False, "code": "internal", "message": "internal error in the collector; retry later"})
            metrics.inc("beaconlake_requests_refused_total", reason="internal")
        metrics.inc("beaconlake_requests_total", code=str(status))
        metrics.observe(time.perf_counter() - start)
        return status, headers, body

    async def _post(self, req: EventRequest, kind: str | None, origin: str | None) -> tuple[int, bytes]:
        door = self.door
        door.check_pressure()
        ctype = (req.header("content-type") or "").split(";", 1)[0].strip().lower()
        if ctype not in JSON_TYPES:
            raise Refused(415, "content_type", f"content type {clean_text(ctype[:64]) or '(none)'!r} is not accepted; "
                          "send application/json or text/plain")
        key = basic_user(req.header("authorization"))
        rules = self._tenant(key, origin) if key else None
        body = await door.read_body(req, segment.MAX_BATCH_BYTES)
        received_at = time.time_ns() // 1_000_000
        try:
            doc = _decoder.decode(body)
        except (msgspec.DecodeError, RecursionError) as exc:
            await self._refuse(rules, "invalid_json", f"body is not valid JSON: {exc}", body)
        if not isinstance(doc, dict):
            await self._refuse(rules, "invalid_batch", "body must be a JSON object (a message, or {\"batch\": [...]})", body)
        if rules is None:
            body_key = doc.get("writeKey")
            rules = self._tenant(body_key if isinstance(body_key, str) else None, origin)
        if kind is None:
            messages = doc.get("batch")
            if not isinstance(messages, list):
                await self._refuse(rules, "invalid_batch", "a batch must be {\"batch\": [message, …]}", body)
        else:
            messages = [doc]
        if not messages:
            raise Refused(400, "empty_batch", "the batch has no messages; send at least one")
        if len(messages) > door.limits.max_batch_events:  # every SDK's default batch is far below it
            error = f"batch has {len(messages)} messages, limit {door.limits.max_batch_events} (collector.max_batch_events); split it"
            await door.keep_rejections(rules.tenant.id, [Rejection(-1, "too_large", error, excerpt(body))], SOURCE)
            raise Refused(413, "too_large", error)
        try:
            sent_at = iso_ms(doc.get("sentAt"), "sentAt")
        except Unmappable as exc:
            await self._refuse(rules, "invalid_batch", exc.error, body)
        tenant = rules.tenant.id
        batch_context = doc.get("context") if kind is None else None
        judged: list[tuple[int, Mapped | Unmappable, bytes]] = []
        for index, message in enumerate(messages):
            raw = _json.encode(message)
            if len(raw) > segment.MAX_MESSAGE_BYTES:
                judged.append((index, Unmappable("too_large", f"{len(raw)} bytes, limit {segment.MAX_MESSAGE_BYTES} "
                                                 "(Segment's limit of a message)"), raw))
                continue
            try:
                judged.append((index, segment.map_message(segment.merged(message, batch_context), tenant, kind, sent_at), raw))
            except Unmappable as exc:
                judged.append((index, exc, raw))
        outcome = await door.store(rules, req, received_at, sent_at, judged, SOURCE)
        rejected = [{"index": r.index, "reason": r.reason, "error": r.error} for r in outcome.rejected]
        if not outcome.accepted:
            self.door.metrics.inc("beaconlake_requests_refused_total", reason="invalid_events")
            return 400, _json.encode({"success": False, "code": "invalid_events", "message": "no message of the request is valid",
                                      "rejected": rejected})
        return 200, _json.encode({"success": True, **({"rejected": rejected} if rejected else {})})

    def _tenant(self, key: str | None, origin: str | None) -> TenantRules:
        rules = self.rules.get(key) if key else None
        if rules is None:
            if not key:
                raise Refused(401, "missing_key", "no write key: send it as the user name of HTTP Basic auth, or as \"writeKey\" in the body")
            raise Refused(401, "unknown_key", "unknown write key; use the tenant's write_key from beaconlake.toml as the Segment write key")
        if not rules.origin_allowed(origin):
            raise Refused(403, "origin", f"origin {origin!r} is not allowed for tenant {rules.tenant.id!r}")
        return rules

    async def _refuse(self, rules: TenantRules | None, reason: str, error: str, body: bytes) -> None:
        """Refuse the request with a 400; a known tenant's is kept in lake/rejected."""
        if rules is not None:
            await self.door.keep_rejections(rules.tenant.id, [Rejection(-1, reason, clean_text(error), excerpt(body))], SOURCE)
        raise Refused(400, reason, error)


def basic_user(header: str | None) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header (Segment's write key), else None."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None

