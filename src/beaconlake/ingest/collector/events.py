"""``POST /v1/events``: the hot path, independent of the server interface.

``EventsEndpoint.handle`` takes an ``EventRequest`` and returns (status, headers, body);
``beaconlake up``'s own HTTP server (``serve/http``) calls it without ASGI, and ``asgi.py``
beside this file adapts it to ASGI (in-process tests, other servers).

Order of checks, cheapest first: method, backpressure, content type and encoding, write
key, origin, body size, envelope, then each event. The answer is 200 only once the
accepted events (and the rejections, kept for the lake's ``rejected`` area) are durable.

Every input gets an answer: 2xx, or a 4xx whose JSON body names the problem. A 5xx means a
fault of ours (the spool cannot take the batch: 503, retry; a bug: 500), never bad input,
because a tracker retries a 5xx until it gets through.

Counters add up: each event of a batch that was judged is received, then accepted or
rejected; a request refused as a whole counts in ``beaconlake_requests_refused_total``.
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
from beaconlake.ingest.collector import endusers, enrich, onepass
from beaconlake.ingest.collector.scrub import scrubbers
from beaconlake.ingest.collector.validate import BatchError, Checked, TenantRules, clean_text, decode_envelope, excerpt
from beaconlake.ingest.route import Batch, Router
from beaconlake.telemetry import Metrics
from beaconlake.types import Rejection, SpoolRecord, UserAgent

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json", "text/plain")
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
_json = msgspec.json.Encoder()
ENRICHED_KEPT = 4096  # (peer, X-Forwarded-For, User-Agent) triples whose enrichment is kept
ENRICHED_KEY_CHARS = 1024  # ... when the two headers are this short together (a browser's are)
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
    # The usual batch takes ``onepass`` and the quick looks at the whole body; off, every batch
    # takes the general path, as the fast path's property tests' reference does.
    fast_path = True

    def __init__(self, settings: Settings, router: Router, metrics: Metrics, pressure: SpoolPressure) -> None:
        self.settings = settings
        self.limits = settings.collector
        self.router = router
        self.metrics = metrics
        self.pressure = pressure
        self.rules = {t.write_key: TenantRules.compile(t, settings.collector) for t in settings.tenants}
        self.retry_after = [("retry-after", str(settings.spool.retry_after_secs))]
        self.proxies = enrich.TrustedProxies(settings.server.trusted_proxies, settings.server.trust_forwarded_for)
        self.scrubbers = scrubbers(settings.tenants, self._hasher)  # [tenants.pii], before the spool
        self._id_hasher = None
        self._enriched: dict[tuple[str | None, str | None, str | None], tuple[str | None, str | None, UserAgent]] = {}

    def _hasher(self):
        """The keyed id hash that pseudonyms use, made on first use (it may read the lake's salt)."""
        if self._id_hasher is None:
            from beaconlake.backends.storage import open_storage
            from beaconlake.lake.privacy import id_hasher

            self._id_hasher = id_hasher(open_storage(self.settings.storage), self.settings.privacy.id_salt or None)
        return self._id_hasher

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
                raise Refused(405, "method", f"{clean_text(req.method)[:16]!r} is not allowed here; POST a batch of events",
                              [("allow", "POST, OPTIONS")])
        except Refused as exc:
            status = exc.status
            self.metrics.inc("beaconlake_requests_refused_total", reason=exc.reason)
            # CORS headers even on 403: the page learns it is refused (and stops retrying);
            # the answer reveals nothing but that, and a write key can only write anyway.
            headers = cors + exc.headers
            body = _json.encode({"error": exc.error, "reason": exc.reason})
        except Exception:  # a bug, not the input: answer (500, so the client keeps its events) and say so in the log
            log.exception("event endpoint failed on a %s request", req.method)
            status, headers = 500, cors
            body = _json.encode({"error": "internal error in the collector; the events were not stored, retry later",
                                 "reason": "internal"})
            self.metrics.inc("beaconlake_requests_refused_total", reason="internal")
        self.metrics.inc("beaconlake_requests_total", code=str(status))
        self.metrics.observe(time.perf_counter() - start)
        return status, headers, body

    def _preflight(self, req: EventRequest, origin: str | None) -> int:
        key = query_key(req.query)
        rules = self.rules.get(key) if key else None
        if rules is not None and not rules.origin_allowed(origin):
            raise Refused(403, "origin", f"origin {_shown(origin)} is not allowed for tenant {rules.tenant.id!r}")
        return 204

    def _tenant(self, key: str | None, origin: str | None) -> TenantRules:
        rules = self.rules.get(key) if key else None
        if rules is None:
            if not key:
                raise Refused(401, "missing_key", "no write key: pass it as ?k=, the X-Beaconlake-Key header, or \"k\" in the body")
            raise Refused(401, "unknown_key", "unknown write key; check data-key / ?k= against the tenant's write_key")
        if not rules.origin_allowed(origin):
            raise Refused(403, "origin", f"origin {_shown(origin)} is not allowed for tenant {rules.tenant.id!r}")
        return rules

    async def _post(self, req: EventRequest, origin: str | None) -> tuple[int, bytes]:
        if self.pressure.reason is not None:
            raise Refused(503, "backpressure", f"collector is shedding load: {self.pressure.reason}; retry later", self.retry_after)
        ctype = (req.header("content-type") or "").split(";", 1)[0].strip().lower()
        if ctype not in JSON_TYPES:
            raise Refused(415, "content_type", f"content type {clean_text(ctype[:64]) or '(none)'!r} is not accepted; "
                          "send application/json or text/plain")
        encoding = (req.header("content-encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise Refused(415, "content_encoding", f"content encoding {clean_text(encoding[:64])!r} is not accepted; send gzip or none")

        key = query_key(req.query) or req.header("x-beaconlake-key")
        rules = self._tenant(key, origin) if key else None
        body = await req.read_body(self.limits.max_body_bytes)
        if encoding == "gzip":
            body = gunzip(body, self.limits.max_body_bytes)
        if body[:3] == UTF8_BOM:  # RFC 8259 lets a parser ignore it; some HTTP clients add one
            body = body[3:]
        received_at = time.time_ns() // 1_000_000
        fast = self.fast_path
        try:
            batch = (onepass.decode if fast else decode_envelope)(body, self.limits.max_json_depth)
        except BatchError as exc:
            if rules is not None:
                await self._keep_refusal(rules, req, received_at, exc.reason, exc.error, body)
            raise Refused(400, exc.reason, exc.error) from None
        if rules is None:
            rules = self._tenant(batch.k, origin)

        n = len(batch)
        if n > self.limits.max_batch_events:
            error = f"batch has {n} events, limit {self.limits.max_batch_events}; split it"
            await self._keep_refusal(rules, req, received_at, "too_large", error, body)
            raise Refused(413, "too_large", error)
        if n == 0:
            raise Refused(400, "empty_batch", "batch has no events; send at least one")

        skew = 0 if batch.sent_at is None else received_at - batch.sent_at
        checked = onepass.check(rules, batch, skew) if fast else rules.check_batch(batch, skew)
        # verbatim: each accepted event is a slice of the body, as sent
        verbatim = fast and batch.typed is not None and not batch.notes
        checked = self.scrub(rules, checked, body, verbatim)
        record = self.record(rules, req, received_at, batch.sent_at, checked.body, None, checked.rejected)
        if endusers.mentions_end_user(checked.accepted):
            record.body, record.clients = endusers.lift(checked.accepted, self.limits.anonymize_ip)
        await self.make_durable(Batch(record, checked.accepted))

        self.metrics.inc("beaconlake_events_received_total", n)
        self.metrics.inc("beaconlake_events_accepted_total", len(checked.accepted))
        for rej in checked.rejected:
            self.metrics.inc("beaconlake_events_rejected_total", reason=rej.reason)
        answer = {"accepted": len(checked.accepted),
                  "rejected": [{"index": r.index, "reason": r.reason, "error": r.error} for r in checked.rejected]}
        if not checked.accepted:
            self.metrics.inc("beaconlake_requests_refused_total", reason="invalid_events")
            return 400, _json.encode({"error": "no event in the batch is valid", "reason": "invalid_events", **answer})
        return 200, _json.encode(answer)

    def record(self, rules: TenantRules, req: EventRequest, received_at: int, sent_at: int | None,
                body: bytes, accepted: list[int] | None, rejected: list[Rejection]) -> SpoolRecord:
        """The spool record of a request of ``rules``' tenant: its clocks and the request's enrichment."""
        ip, ua, parsed = self.enrichment(req.peer, req.header("x-forwarded-for"), req.header("user-agent"))
        return SpoolRecord(rules.tenant.id, received_at, sent_at or received_at, ip, ua, parsed, body, accepted, rejected)

    def enrichment(self, peer: str | None, forwarded_for: str | None, agent: str | None) -> tuple[str | None, str | None, UserAgent]:
        """(address, agent, parsed agent) of a request: a pure function of its peer and two
        headers, kept for the last ``ENRICHED_KEPT`` of them (a connection sends many requests)."""
        key = (peer, forwarded_for, agent)
        found = self._enriched.get(key)
        if found is not None:
            return found
        ip = enrich.client_ip(peer, forwarded_for, self.proxies)
        if ip is not None and self.limits.anonymize_ip:
            ip = enrich.anonymize_ip(ip)
        ua = None if agent is None else clean_text(agent)
        found = (ip, ua, enrich.user_agent(ua))
        if len(agent or "") + len(forwarded_for or "") <= ENRICHED_KEY_CHARS:  # bounded memory, whatever is sent
            if len(self._enriched) >= ENRICHED_KEPT:
                self._enriched.clear()
            self._enriched[key] = found
        return found

    async def make_durable(self, batch: Batch) -> None:
        """Return once ``batch`` is in the spool (the router's durable destination); a 503 when it cannot be."""
        try:
            await self.router.route(batch)
        except OSError as exc:
            # Disk full or failing: nothing was acknowledged, so the client keeps its events.
            log.error("spool write failed: %s", exc)
            raise Refused(503, "spool_unavailable", f"cannot make events durable right now ({exc.strerror or exc}); retry later",
                          self.retry_after) from None

    def scrub(self, rules: TenantRules, checked: Checked, body: bytes, verbatim: bool = False) -> Checked:
        """``checked`` with the tenant's PII rules applied (``[tenants.pii]``), before anything is
        spooled; every door calls it (this endpoint and the Segment and Snowplow doors).
        ``verbatim``: every accepted event is a slice of ``body`` as sent (``Scrubber.batch``)."""
        scrubber = self.scrubbers.get(rules.tenant.id)
        if scrubber is None:
            return checked
        checked = scrubber.batch(checked, body, verbatim)
        if scrubber.counts:  # the usual batch has nothing scrubbed: no counter to swap
            for rule, times in scrubber.take_counts().items():
                self.metrics.inc("beaconlake_pii_scrubbed_total", times, rule=rule)
        return checked

    async def _keep_refusal(self, rules: TenantRules, req: EventRequest, received_at: int, reason: str, error: str,
                            body: bytes) -> None:
        """A refused batch of a known tenant is kept in lake/rejected like a rejected event."""
        shown = excerpt(body)
        if rules.tenant.id in self.scrubbers:
            shown = self.scrubbers[rules.tenant.id].text(shown)
        record = self.record(rules, req, received_at, None, b"", [], [Rejection(-1, reason, error, shown)])
        await self.make_durable(Batch(record, []))


def query_key(qs: str) -> str | None:
    for part in qs.split("&") if qs else ():
        if part.startswith("k="):
            value = part[2:]
            return unquote_plus(value) if "%" in value or "+" in value else value
    return None


def too_large(size: int, limit: int, what: str = "body") -> Refused:
    return Refused(413, "too_large", f"{what} is {size} bytes, limit {limit}")


def gunzip(body: bytes, limit: int) -> bytes:
    """The decompressed body, at most ``limit`` bytes. Members are decompressed one after the
    other, as RFC 1952 defines a gzip file and as ``gzip.decompress`` and zcat read one (a client
    that compresses in chunks sends several); anything after the last member that is not a
    member is refused, since it would be silently dropped."""
    out: list[bytes] = []
    size = members = 0
    data = body
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(data, limit - size + 1)
        except zlib.error as exc:
            where = f"gzip member {members + 1} (at byte {len(body) - len(data)})" if members else "body"
            raise Refused(400, "invalid_gzip", f"{where} is not valid gzip: {exc}") from None
        size += len(chunk)
        if size > limit:
            raise Refused(413, "too_large", f"body is over {limit} bytes once decompressed, limit {limit}")
        if not inflater.eof:
            raise Refused(400, "invalid_gzip", "gzip body is truncated")
        out.append(chunk)
        members += 1
        data = inflater.unused_data
        if not data:
            return b"".join(out)
        if data[:2] != GZIP_MAGIC:
            raise Refused(400, "invalid_gzip", f"{len(data)} bytes of trailing garbage after gzip member {members} "
                          f"(which ends at byte {len(body) - len(data)}); send the gzip data and nothing after it")


def _shown(value: str | None, limit: int = 200) -> str:
    """A header value as an error message quotes it: repr (escapes control characters and lone
    surrogates, so the answer is valid UTF-8), cut to ``limit`` characters."""
    return repr(value if value is None or len(value) <= limit else value[:limit] + "…")
