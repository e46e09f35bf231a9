"""``POST /v1/events``: the hot path, written as a plain ASGI callable.

Order of checks, cheapest first: method, backpressure, content type and encoding, write
key, origin, body size, envelope, then each event. The answer is 200 only once the
accepted events (and the rejections, kept for the lake's ``rejected`` area) are durable.
"""

from __future__ import annotations

import logging
import time
import zlib
from typing import Any
from urllib.parse import unquote_plus

import msgspec

from beaconlake.config import Settings
from beaconlake.ingest.collector import enrich
from beaconlake.ingest.collector.validate import TenantRules, decode_envelope, excerpt
from beaconlake.ingest.route import Batch, Router
from beaconlake.telemetry import Metrics
from beaconlake.types import Rejection, SpoolRecord

log = logging.getLogger(__name__)

JSON_TYPES = (b"application/json", b"text/plain")
_json = msgspec.json.Encoder()
PREFLIGHT_HEADERS = [
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (b"access-control-allow-headers", b"content-type, content-encoding, x-beaconlake-key"),
    (b"access-control-max-age", b"86400"),
]


class Refused(Exception):
    """A whole request refused: status, machine-readable reason, and the message for the sender."""

    def __init__(self, status: int, reason: str, error: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(error)
        self.status, self.reason, self.error, self.headers = status, reason, error, headers or []


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
        self.retry_after = str(settings.spool.retry_after_secs).encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        start = time.perf_counter()
        headers = _headers(scope)
        origin = headers.get(b"origin")
        cors: list[tuple[bytes, bytes]] = [(b"access-control-allow-origin", origin), (b"vary", b"Origin")] if origin else []
        try:
            if scope["method"] == "OPTIONS":
                status = await self._preflight(scope, headers, send, cors)
            elif scope["method"] != "POST":
                raise Refused(405, "method", f"{scope['method']} is not allowed here; POST a batch of events", [(b"allow", b"POST, OPTIONS")])
            else:
                status, body = await self._post(scope, headers, receive)
                await _respond(send, status, body, cors)
        except Refused as exc:
            status = exc.status
            self.metrics.inc("beaconlake_events_rejected_total", reason=exc.reason)
            if exc.status == 403:
                cors = []  # never let a disallowed origin read our answer
            await _respond(send, status, _json.encode({"error": exc.error, "reason": exc.reason}), cors + exc.headers)
        self.metrics.inc("beaconlake_requests_total", code=str(status))
        self.metrics.observe(time.perf_counter() - start)

    async def _preflight(self, scope: dict[str, Any], headers: dict[bytes, bytes], send: Any, cors: list) -> int:
        key = _query_key(scope)
        rules = self.rules.get(key) if key else None
        if rules is not None and not rules.origin_allowed(_origin(headers)):
            raise Refused(403, "origin", f"origin {_origin(headers)!r} is not allowed for tenant {rules.tenant.id!r}")
        await _respond(send, 204, b"", cors + PREFLIGHT_HEADERS)
        return 204

    async def _post(self, scope: dict[str, Any], headers: dict[bytes, bytes], receive: Any) -> tuple[int, bytes]:
        if self.pressure.reason is not None:
            raise Refused(503, "backpressure", f"collector is shedding load: {self.pressure.reason}; retry later",
                          [(b"retry-after", self.retry_after)])
        ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if ctype not in JSON_TYPES:
            raise Refused(415, "content_type",
                          f"content type {ctype.decode(errors='replace') or '(none)'!r} is not accepted; send application/json or text/plain")
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"identity", b"gzip"):
            raise Refused(415, "content_encoding", f"content encoding {encoding.decode(errors='replace')!r} is not accepted; send gzip or none")

        key = _query_key(scope) or headers.get(b"x-beaconlake-key", b"").decode(errors="replace") or None
        rules = self.rules.get(key) if key else None
        if key and rules is None:
            raise Refused(401, "unknown_key", "unknown write key; check data-key / ?k= against the tenant's write_key")
        if rules is not None and not rules.origin_allowed(_origin(headers)):
            raise Refused(403, "origin", f"origin {_origin(headers)!r} is not allowed for tenant {rules.tenant.id!r}")

        body = await _read_body(receive, headers, self.limits.max_body_bytes, encoding == b"gzip")
        received_at = time.time_ns() // 1_000_000
        try:
            envelope = decode_envelope(body)
        except msgspec.DecodeError as exc:
            kind = "invalid_json" if not isinstance(exc, msgspec.ValidationError) else "invalid_batch"
            error = f"body is not valid JSON: {exc}" if kind == "invalid_json" else f"batch envelope: {exc}; expected {{\"sent_at\": ms, \"events\": [...]}}"
            if rules is not None:
                await self._keep_refusal(rules, scope, headers, received_at, kind, error, body)
            raise Refused(400, kind, error) from None

        if rules is None:
            if not envelope.k:
                raise Refused(401, "missing_key", "no write key: pass it as ?k=, the X-Beaconlake-Key header, or \"k\" in the body")
            rules = self.rules.get(envelope.k)
            if rules is None:
                raise Refused(401, "unknown_key", "unknown write key; check data-key / ?k= against the tenant's write_key")
            if not rules.origin_allowed(_origin(headers)):
                raise Refused(403, "origin", f"origin {_origin(headers)!r} is not allowed for tenant {rules.tenant.id!r}")

        n = len(envelope.events)
        self.metrics.inc("beaconlake_events_received_total", n)
        if n > self.limits.max_batch_events:
            error = f"batch has {n} events, limit {self.limits.max_batch_events}; split it"
            await self._keep_refusal(rules, scope, headers, received_at, "too_large", error, body)
            raise Refused(413, "too_large", error)
        if n == 0:
            raise Refused(400, "empty_batch", "batch has no events; send at least one")

        accepted, indexes, rejected = rules.check_batch(envelope)
        record = self._record(rules, scope, headers, received_at, envelope.sent_at, body, indexes, rejected)
        await self._make_durable(Batch(record, accepted))

        self.metrics.inc("beaconlake_events_accepted_total", len(accepted))
        for rej in rejected:
            self.metrics.inc("beaconlake_events_rejected_total", reason=rej.reason)
        answer = {"accepted": len(accepted), "rejected": [{"index": r.index, "error": r.error} for r in rejected]}
        if not accepted:
            return 400, _json.encode({"error": "no event in the batch is valid", "reason": "invalid_events", **answer})
        return 200, _json.encode(answer)

    def _record(self, rules: TenantRules, scope: dict[str, Any], headers: dict[bytes, bytes], received_at: int,
                sent_at: int | None, body: bytes, accepted: list[int] | None, rejected: list[Rejection]) -> SpoolRecord:
        peer = scope.get("client")
        ip = enrich.client_ip(peer[0] if peer else None, _str(headers.get(b"x-forwarded-for")),
                              self.settings.server.trust_forwarded_for)
        if ip is not None and self.limits.anonymize_ip:
            ip = enrich.anonymize_ip(ip)
        ua = _str(headers.get(b"user-agent"))
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
                          [(b"retry-after", self.retry_after)]) from None

    async def _keep_refusal(self, rules: TenantRules, scope: dict[str, Any], headers: dict[bytes, bytes],
                            received_at: int, reason: str, error: str, body: bytes) -> None:
        """A refused batch of a known tenant is kept in lake/rejected like a rejected event."""
        record = self._record(rules, scope, headers, received_at, None, b"", [], [Rejection(-1, reason, error, excerpt(body))])
        await self._make_durable(Batch(record, []))


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    return {k: v for k, v in scope["headers"]}


def _str(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value else None


def _origin(headers: dict[bytes, bytes]) -> str | None:
    return _str(headers.get(b"origin"))


def _query_key(scope: dict[str, Any]) -> str | None:
    qs: bytes = scope.get("query_string", b"")
    for part in qs.split(b"&") if qs else ():
        if part.startswith(b"k="):
            value = part[2:].decode("latin-1")
            return unquote_plus(value) if b"%" in part or b"+" in part else value
    return None


async def _read_body(receive: Any, headers: dict[bytes, bytes], limit: int, gzipped: bool) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, "too_large", f"body is {int(declared)} bytes, limit {limit}")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(400, "disconnected", "client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refused(413, "too_large", f"body is over {limit} bytes, limit {limit}")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    if not gzipped:
        return body
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


async def _respond(send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
