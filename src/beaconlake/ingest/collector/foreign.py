"""What the Segment and Snowplow doors share: judging mapped messages like tracker events, and
making them durable exactly as ``POST /v1/events`` does.

The invariant is the native door's: a 2xx only once every accepted event (and every rejection,
kept for ``lake/rejected``) is in the spool. A foreign message is mapped to the canonical event
(``ingest.protocols``) and then checked by the same ``TenantRules`` (types, limits, the tenant's
schemas); what fails either step is rejected with its reason and an excerpt of the message as
it was sent. The spool record holds the canonical events only, so delivery, realtime and
convert read them like any other; it says which protocol they came in (``source``) and, per
event, the end user's own agent and address when the message carried them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgspec

from beaconlake.ingest.collector import enrich
from beaconlake.ingest.collector.events import EventRequest, EventsEndpoint, Refused, gunzip
from beaconlake.ingest.collector.validate import Accepted, Checked, TenantRules, clean_text, excerpt
from beaconlake.ingest.protocols.common import Mapped, Unmappable
from beaconlake.ingest.route import Batch
from beaconlake.types import Client, ClientEvent, Rejection, SpoolRecord

_encoder = msgspec.json.Encoder()


@dataclass(slots=True)
class Judged:
    """The outcome of a request's messages: what the answer and the counters say."""

    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)


class ForeignDoor:
    """The shared half of a protocol endpoint; ``events`` is the worker's native endpoint, whose
    spool, router, counters and tenant rules it uses."""

    def __init__(self, events: EventsEndpoint) -> None:
        self.events = events
        self.metrics = events.metrics
        self.limits = events.limits
        self.anonymize = events.limits.anonymize_ip

    def check_pressure(self) -> None:
        if self.events.pressure.reason is not None:
            raise Refused(503, "backpressure", f"collector is shedding load: {self.events.pressure.reason}; retry later",
                          self.events.retry_after)

    async def read_body(self, req: EventRequest, max_bytes: int) -> bytes:
        """The request body, decompressed when it says gzip, at most ``max_bytes`` either way."""
        encoding = (req.header("content-encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise Refused(415, "content_encoding", f"content encoding {clean_text(encoding[:64])!r} is not accepted; send gzip or none")
        body = await req.read_body(self.limits.max_body_bytes)
        if encoding == "gzip":
            body = gunzip(body, max_bytes)
        if len(body) > max_bytes:
            raise Refused(400, "too_large", f"body is {len(body)} bytes, limit {max_bytes}")
        return body.removeprefix(b"\xef\xbb\xbf")

    async def store(self, rules: TenantRules, req: EventRequest, received_at: int, sent_at: int | None,
                    messages: list[tuple[int, Mapped | Unmappable, bytes]], source: str) -> Judged:
        """Judge each (index, mapping, message bytes) and make the outcome durable."""
        skew = 0 if sent_at is None else received_at - sent_at
        judged = Judged()
        kept: list[msgspec.Raw] = []
        accepted: list[ClientEvent] = []
        clients: dict[int, Client] = {}
        for index, mapped, raw in messages:
            if isinstance(mapped, Unmappable):
                judged.rejected.append(Rejection(index, mapped.reason, clean_text(f"message {index}: {mapped.error}"), excerpt(raw)))
                continue
            try:
                data = _encoder.encode(mapped.event)
            except (TypeError, ValueError, OverflowError) as exc:  # a value JSON cannot hold (NaN came in as a float)
                judged.rejected.append(Rejection(index, "invalid_event", f"message {index}: {exc}", excerpt(raw)))
                continue
            ev, rej = rules.check_raw(index, data, {}, skew)
            if ev is None:
                error = rej.error if rej is not None else "not a valid event"
                judged.rejected.append(Rejection(index, rej.reason if rej else "invalid_event",
                                                 f"message {index}, mapped to the canonical event: {error}", excerpt(raw)))
                continue
            if mapped.end_user:
                clients[len(kept)] = enrich.end_user(mapped.ip, mapped.user_agent, self.anonymize, mapped.device)
            kept.append(msgspec.Raw(data))
            accepted.append(ev)
        judged.accepted = len(kept)
        if not kept and not judged.rejected:
            return judged
        body = _encoder.encode(Accepted(kept)) if kept else b""
        scrubbed = self.events.scrub(rules, Checked(accepted, judged.rejected, body), body)  # the same PII rules
        accepted, judged.rejected, body = scrubbed.accepted, scrubbed.rejected, scrubbed.body
        record = self.events.record(rules, req, received_at, sent_at, body, None if kept else [], judged.rejected)
        record.source, record.clients = source, clients or None
        await self.events.make_durable(Batch(record, accepted))
        self.metrics.inc("beaconlake_events_received_total", len(messages))
        self.metrics.inc("beaconlake_events_accepted_total", judged.accepted)
        self.metrics.inc("beaconlake_source_events_accepted_total", judged.accepted, source=source)
        for rej in judged.rejected:
            self.metrics.inc("beaconlake_events_rejected_total", reason=rej.reason)
        return judged

    async def keep_rejections(self, tenant: str, rejections: list[Rejection], source: str) -> None:
        """A request refused whole (index -1), or messages no tenant claims, kept in lake/rejected.
        ``tenant`` may be ``rows.UNKNOWN_TENANT`` when the request names none we know."""
        received_at = time.time_ns() // 1_000_000
        record = SpoolRecord(tenant, received_at, received_at, None, None, enrich.user_agent(None), b"", [],
                             rejections, source)
        await self.events.make_durable(Batch(record, []))
        events = [rej for rej in rejections if rej.index >= 0]  # a refusal of the whole request is counted as one
        self.metrics.inc("beaconlake_events_received_total", len(events))
        for rej in events:
            self.metrics.inc("beaconlake_events_rejected_total", reason=rej.reason)
