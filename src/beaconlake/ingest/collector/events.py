"""``POST /v1/events``: the hot path, independent of the server interface.

``EventsEndpoint.handle`` takes an ``EventRequest`` and returns (status, headers, body);
``beaconlake up``'s own HTTP server (``serve/http``) calls it without ASGI, and ``asgi.py``
beside this file adapts it to ASGI (in-process tests, other servers).

Order of checks, cheapest first: method, backpressure, content type and encoding, write
key, origin, body size, envelope, then each event. The answer is 200 only once the
accepted events (and the rejections, kept for the lake's ``rejected`` area) are durable.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote_plus

import msgspec

from beaconlake.config import Settings
from beaconlake.ingest.collector import enrich
from beaconlake.ingest.collector.validate import TenantRules, decode_envelope, excerpt
from beaconlake.ingest.route import Batch, Router
from beaconlake.telemetry import Metrics
from beaconlake.types import Rejection, SpoolRecord

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json", "text/plain")
_json = msgspec.json.Encoder()
Headers = list[tuple[str, str]]
PREFLIGHT_HEADERS: Headers = [
    ("access-control-allow-methods", "POST, OPTIONS"),
    ("access-control-allow-headers", "content-type, content-encoding, x-beaconlake-key"),
    ("access-control-max-age", "86400"),
]


class Refused(Exception):
    """A whole request refused: status, machine-readable reason, and the message for the sender."""

    def __init__(self, status: int, reason: str, error: str, headers: Headers | None = None) -> None:
        super().__init__(error)
        self.status, self.reason, self.error, self.headers = status, reason, error, headers or []


@dataclass(slots=True)
class EventRequest:
    """What the endpoint needs of a request, whatever the server interface."""

    method: str
    query: str  # the raw query string
    header: Callable[[str], str | None]  # lower-case name -> value
    peer: str | None  # the client's address
    read_body: Callable[[int], Awaitable[bytes]]  # reads at most the given bytes, else raises Refused(413)


class SpoolPressure:
    """Set by the collector's housekeeping task; read on every request."""

    def __init__(self) -> None:
        self.reason: str | None = None


class EventsEndpoint:
    def __init__(self, settings: Settings, router: Router, metrics: Metrics, pressure: SpoolPressure) -> None:
        self.settings = settings
        self.limits = settings.collector
        self.router = router
        self.metrics = metrics
        self.pressure = pressure
        self.rules = {t.write_key: TenantRules.compile(t, settings.collector) for t in settings.tenants}
        self.retry_after = [("retry-after", str(settings.spool.retry_after_secs))]

    async def handle(self, req: EventRequest) -> tuple[int, Headers, bytes]:
        start = time.perf_counter()
        origin = req.header("origin")
        # Expose Retry-After so a tracker on another origin can honour it.
        cors: Headers = [("access-control-allow-origin", origin), ("access-control-expose-headers", "Retry-After"),
                         ("vary", "Origin")] if origin else []
        try:
            if req.method == "POST":
                status, body = await self._post(req, origin)
                headers = cors
            elif req.method == "OPTIONS":
                status, headers, body = self._preflight(req, origin), cors + PREFLIGHT_HEADERS, b""
            else:
                raise Refused(405, "method", f"{req.method} is not allowed here; POST a batch of events", [("allow", "POST, OPTIONS")])
        except Refused as exc:
            status = exc.status
            self.metrics.inc("beaconlake_events_rejected_total", reason=exc.reason)
            # CORS headers even on 403: the page learns it is refused (and stops retrying);
            # the answer reveals nothing but that, and a write key can only write anyway.
            headers = cors + exc.headers
            body = _json.encode({"error": exc.error, "reason": exc.reason})
        self.metrics.inc("beaconlake_requests_total", code=str(status))
        self.metrics.observe(time.perf_counter() - start)
        return status, headers, body

    def _preflight(self, req: EventRequest, origin: str | None) -> int:
        key = query_key(req.query)
        rules = self.rules.get(key) if key else None
        if rules is not None and not rules.origin_allowed(origin):
            raise Refused(403, "origin", f"origin {origin!r} is not allowed for tenant {rules.tenant.id!r}")
        return 204

    def _tenant(self, key: str | None, origin: str | None) -> TenantRules:
        rules = self.rules.get(key) if key else None
        if rules is None:
            if not key:
                raise Refused(401, "missing_key", "no write key: pass it as ?k=, the X-Beaconlake-Key header, or \"k\" in the body")
            raise Refused(401, "unknown_key", "unknown write key; check data-key / ?k= against the tenant's write_key")
        if not rules.origin_allowed(origin):
            raise Refused(403, "origin", f"origin {origin!r} is not allowed for tenant {rules.tenant.id!r}")
        return rules

    async def _post(self, req: EventRequest, origin: str | None) -> tuple[int, bytes]:
        if self.pressure.reason is not None:
            raise Refused(503, "backpressure", f"collector is shedding load: {self.pressure.reason}; retry later", self.retry_after)
        ctype = (req.header("content-type") or "").split(";", 1)[0].strip().lower()
        if ctype not in JSON_TYPES:
            raise Refused(415, "content_type", f"content type {ctype or '(none)'!r} is not accepted; send application/json or text/plain")
        encoding = (req.header("content-encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise Refused(415, "content_encoding", f"content encoding {encoding!r} is not accepted; send gzip or none")

        key = query_key(req.query) or req.header("x-beaconlake-key")
        rules = self._tenant(key, origin) if key else None
        body = await req.read_body(self.limits.max_body_bytes)
        if encoding == "gzip":
            body = gunzip(body, self.limits.max_body_bytes)
        received_at = time.time_ns() // 1_000_000
        try:
            envelope = decode_envelope(body)
        except msgspec.DecodeError as exc:
            if isinstance(exc, msgspec.ValidationError):
                reason, error = "invalid_batch", f"batch envelope: {exc}; expected {{\"sent_at\": ms, \"events\": [...]}}"
            else:
                reason, error = "invalid_json", f"body is not valid JSON: {exc}"
            if rules is not None:
                await self._keep_refusal(rules, req, received_at, reason, error, body)
            raise Refused(400, reason, error) from None
        if rules is None:
            rules = self._tenant(envelope.k, origin)

        n = len(envelope.events)
        self.metrics.inc("beaconlake_events_received_total", n)
        if n > self.limits.max_batch_events:
            error = f"batch has {n} events, limit {self.limits.max_batch_events}; split it"
            await self._keep_refusal(rules, req, received_at, "too_large", error, body)
            raise Refused(413, "too_large", error)
        if n == 0:
            raise Refused(400, "empty_batch", "batch has no events; send at least one")

        accepted, indexes, rejected = rules.check_batch(envelope)
        record = self._record(rules, req, received_at, envelope.sent_at, body, indexes, rejected)
        await self._make_durable(Batch(record, accepted))

        self.metrics.inc("beaconlake_events_accepted_total", len(accepted))
        for rej in rejected:
            self.metrics.inc("beaconlake_events_rejected_total", reason=rej.reason)
        answer = {"accepted": len(accepted), "rejected": [{"index": r.index, "error": r.error} for r in rejected]}
        if not accepted:
            return 400, _json.encode({"error": "no event in the batch is valid", "reason": "invalid_events", **answer})
        return 200, _json.encode(answer)

    def _record(self, rules: TenantRules, req: EventRequest, received_at: int, sent_at: int | None,
                body: bytes, accepted: list[int] | None, rejected: list[Rejection]) -> SpoolRecord:
        ip = enrich.client_ip(req.peer, req.header("x-forwarded-for"), self.settings.server.trust_forwarded_for)
        if ip is not None and self.limits.anonymize_ip:
            ip = enrich.anonymize_ip(ip)
        ua = req.header("user-agent")
        return SpoolRecord(
            rules.tenant.id, received_at, sent_at or received_at, ip, ua, enrich.user_agent(ua), body, accepted, rejected
        )

    async def _make_durable(self, batch: Batch) -> None:
        try:
            await self.router.route(batch)
        except OSError as exc:
            # Disk full or failing: nothing was acknowledged, so the client keeps its events.
            log.error("spool write failed: %s", exc)
            raise Refused(503, "spool_unavailable", f"cannot make events durable right now ({exc.strerror or exc}); retry later",
                          self.retry_after) from None

    async def _keep_refusal(self, rules: TenantRules, req: EventRequest, received_at: int, reason: str, error: str,
                            body: bytes) -> None:
        """A refused batch of a known tenant is kept in lake/rejected like a rejected event."""
        record = self._record(rules, req, received_at, None, b"", [], [Rejection(-1, reason, error, excerpt(body))])
        await self._make_durable(Batch(record, []))


def query_key(qs: str) -> str | None:
    for part in qs.split("&") if qs else ():
        if part.startswith("k="):
            value = part[2:]
            return unquote_plus(value) if "%" in value or "+" in value else value
    return None


def too_large(size: int, limit: int, what: str = "body") -> Refused:
    return Refused(413, "too_large", f"{what} is {size} bytes, limit {limit}")


def gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise Refused(400, "invalid_gzip", f"body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise Refused(413, "too_large", f"body is over {limit} bytes once decompressed, limit {limit}")
    if not inflater.eof:
        raise Refused(400, "invalid_gzip", "gzip body is truncated")
    return out
