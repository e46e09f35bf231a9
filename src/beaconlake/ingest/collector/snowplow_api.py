"""Snowplow's tracker protocol, at the paths its trackers use by default: ``POST
/com.snowplowanalytics.snowplow/tp2`` (a ``payload_data`` batch) and ``GET /i?…`` (one event,
answered with a 1x1 GIF), each behind ``collector.snowplow_path_prefix`` when one is set.

Snowplow has no write key: each event's app id (``aid``) names its tenant, through the tenant's
``app_ids`` (or its write key used as the app id). An event whose app id no tenant claims is
refused with an error that names it, and kept in ``lake/rejected/tenant=_unknown``; a request
none of whose events is accepted gets a 4xx (which Snowplow's trackers do not retry).
Browser trackers send cookies (``credentials: include``), so the answer allows credentials for
the (echoed, then checked per tenant) Origin.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from beaconlake.config import Settings
from beaconlake.ingest.collector.events import JSON_TYPES, EventRequest, Headers, Refused
from beaconlake.ingest.collector.foreign import ForeignDoor
from beaconlake.ingest.collector.validate import TenantRules, clean_text, excerpt
from beaconlake.ingest.protocols import snowplow
from beaconlake.ingest.protocols.common import Mapped, Unmappable
from beaconlake.lake.records import UNKNOWN_TENANT
from beaconlake.types import Rejection

log = logging.getLogger(__name__)
SOURCE = "snowplow"
# The smallest transparent GIF: what a tracker's pixel request expects back.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_json = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class SnowplowApi:
    def __init__(self, door: ForeignDoor, settings: Settings) -> None:
        self.door = door
        prefix = settings.collector.snowplow_path_prefix
        self.post_path = prefix + snowplow.TP2_PATH
        self.get_path = prefix + snowplow.TP1_PATH
        # An app id names a tenant; a tenant's write key works as its app id too.
        self.by_app_id: dict[str, TenantRules] = {}
        for rules in door.events.rules.values():
            self.by_app_id[rules.tenant.write_key] = rules
            for app_id in rules.tenant.app_ids:
                self.by_app_id[app_id] = rules

    def fast_routes(self) -> dict[str, Any]:
        return {self.post_path: self.post}

    async def get(self, request: Request) -> Response:
        """``GET /i``: one event in the query string; the answer is a pixel (or the error, as JSON)."""
        req = EventRequest(request.method, request.url.query, request.headers.get,
                           request.client.host if request.client else None, _no_body)
        status, headers, body = await self._answer(req, self._get)
        if status == 200:
            return Response(PIXEL, media_type="image/gif", headers={**dict(headers), "cache-control": "no-cache, no-store"})
        return Response(body, status_code=status, media_type="application/json", headers=dict(headers))

    async def post(self, req: EventRequest) -> tuple[int, Headers, bytes]:
        return await self._answer(req, self._post)

    async def _answer(self, req: EventRequest, work: Any) -> tuple[int, Headers, bytes]:
        metrics = self.door.metrics
        start = time.perf_counter()
        origin = req.header("origin")
        cors: Headers = [("access-control-allow-origin", origin), ("access-control-allow-credentials", "true"),
                         ("vary", "Origin")] if origin else []
        try:
            if req.method == "OPTIONS":
                status, body = 204, b""
                cors += [("access-control-allow-methods", "GET, POST, OPTIONS"),
                         ("access-control-allow-headers", req.header("access-control-request-headers") or "content-type"),
                         ("access-control-max-age", "86400")]
            else:
                status, body = await work(req, origin)
        except Refused as exc:
            status, cors = exc.status, cors + exc.headers
            metrics.inc("beaconlake_requests_refused_total", reason=exc.reason)
            body = _json.encode({"error": exc.error, "reason": exc.reason})
        except Exception:  # a bug, not the input: 500, so the tracker keeps the events and retries
            log.exception("Snowplow endpoint failed on a %s request", req.method)
            status, body = 500, _json.encode({"error": "internal error in the collector; retry later", "reason": "internal"})
            metrics.inc("beaconlake_requests_refused_total", reason="internal")
        metrics.inc("beaconlake_requests_total", code=str(status))
        metrics.observe(time.perf_counter() - start)
        return status, cors, body

    async def _get(self, req: EventRequest, origin: str | None) -> tuple[int, bytes]:
        if req.method not in ("GET", "HEAD"):
            raise Refused(405, "method", f"{clean_text(req.method)[:16]!r} is not allowed here", [("allow", "GET, OPTIONS")])
        self.door.check_pressure()
        params = dict(parse_qsl(req.query, keep_blank_values=True))
        return await self._judge([params], [req.query.encode("utf-8", "backslashreplace")], req, origin)

    async def _post(self, req: EventRequest, origin: str | None) -> tuple[int, bytes]:
        if req.method != "POST":
            raise Refused(405, "method", f"{clean_text(req.method)[:16]!r} is not allowed here; POST a payload_data batch",
                          [("allow", "POST, OPTIONS")])
        self.door.check_pressure()
        ctype = (req.header("content-type") or "").split(";", 1)[0].strip().lower()
        if ctype not in JSON_TYPES:
            raise Refused(415, "content_type", f"content type {clean_text(ctype[:64]) or '(none)'!r} is not accepted; send application/json")
        body = await self.door.read_body(req, self.door.limits.max_body_bytes)
        try:
            events = snowplow.payload_events(_decoder.decode(body))
        except (msgspec.DecodeError, RecursionError) as exc:
            raise Refused(400, "invalid_json", f"body is not valid JSON: {exc}") from None
        except Unmappable as exc:
            raise Refused(400, exc.reason, exc.error) from None
        if not events:
            raise Refused(400, "empty_batch", "payload_data has no events; send at least one")
        if len(events) > self.door.limits.max_batch_events:
            raise Refused(413, "too_large", f"batch has {len(events)} events, limit {self.door.limits.max_batch_events}; split it")
        return await self._judge(events, [_json.encode(e) for e in events], req, origin)

    async def _judge(self, events: list[Any], raws: list[bytes], req: EventRequest, origin: str | None) -> tuple[int, bytes]:
        """Group the events by the tenant their app id names, and store each group."""
        received_at = time.time_ns() // 1_000_000
        groups: dict[str, list[tuple[int, Any, bytes]]] = defaultdict(list)
        unclaimed: list[Rejection] = []
        refused_origin: list[Rejection] = []
        for index, (params, raw) in enumerate(zip(events, raws)):
            aid = params.get("aid") if isinstance(params, dict) else None
            rules = self.by_app_id.get(aid) if isinstance(aid, str) else None
            if rules is None:
                unclaimed.append(Rejection(index, "unknown_app_id", clean_text(
                    f"event {index}: app id (aid) {aid!r} is not claimed by any tenant; add it to the tenant's app_ids "
                    "in beaconlake.toml, or set the tracker's app id to the tenant's write key"), excerpt(raw)))
            elif not rules.origin_allowed(origin):
                refused_origin.append(Rejection(index, "origin", f"event {index}: origin {origin!r} is not allowed for "
                                                f"tenant {rules.tenant.id!r}", excerpt(raw)))
            else:
                groups[rules.tenant.write_key].append((index, params, raw))
        if unclaimed:
            await self.door.keep_rejections(UNKNOWN_TENANT, unclaimed, SOURCE)
        accepted, rejected = 0, unclaimed + refused_origin
        for write_key, members in groups.items():
            rules = self.door.events.rules[write_key]
            sent_at = next((s for s in (snowplow.sent_at(p) for _, p, _ in members) if s is not None), None)
            judged: list[tuple[int, Mapped | Unmappable, bytes]] = []
            for index, params, raw in members:
                try:
                    judged.append((index, snowplow.map_event(params, rules.tenant.id, sent_at), raw))
                except Unmappable as exc:
                    judged.append((index, exc, raw))
            outcome = await self.door.store(rules, req, received_at, sent_at, judged, SOURCE)
            accepted += outcome.accepted
            rejected += outcome.rejected
        answer = {"accepted": accepted, "rejected": [{"index": r.index, "reason": r.reason, "error": r.error}
                                                     for r in sorted(rejected, key=lambda r: r.index)]}
        if accepted:
            return 200, _json.encode(answer)
        self.door.metrics.inc("beaconlake_requests_refused_total", reason="invalid_events")
        if unclaimed and len(unclaimed) == len(events):
            return 401, _json.encode({"error": unclaimed[0].error, "reason": "unknown_app_id", **answer})
        if refused_origin and not groups:
            return 403, _json.encode({"error": refused_origin[0].error, "reason": "origin", **answer})
        return 400, _json.encode({"error": "no event of the request is valid", "reason": "invalid_events", **answer})


async def _no_body(limit: int) -> bytes:
    return b""
