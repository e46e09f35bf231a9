"""The router (the talk's fan-out): hands each accepted batch to the destinations of its levels.

The lake destination is durable: the collector acknowledges a request only once it has the
batch on disk. Other destinations (mid-level counters, high-level indexing) see events only
after that, and their failures are counted, never turned into lost acknowledged events.
Adding one is a class with ``levels``, ``durable`` and ``deliver``, and a line in
``build_router``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import msgspec

from beaconlake.ingest.spool import SegmentWriter
from beaconlake.logs import RepeatedFailures
from beaconlake.telemetry import Metrics
from beaconlake.types import LEVELS, ClientEvent, SpoolRecord

log = logging.getLogger(__name__)
_record_encoder = msgspec.msgpack.Encoder()


@dataclass(slots=True)
class Batch:
    record: SpoolRecord
    events: list[ClientEvent]  # the accepted events, decoded

    def only(self, levels: frozenset[str]) -> Batch:
        keep = [i for i, ev in enumerate(self.events) if ev.level in levels]
        if len(keep) == len(self.events):
            return self
        rec = self.record
        positions = rec.accepted if rec.accepted is not None else range(len(self.events))
        record = SpoolRecord(
            rec.tenant, rec.received_at, rec.sent_at, rec.ip, rec.user_agent, rec.ua, rec.body,
            [positions[i] for i in keep], [], rec.source, rec.clients,
        )
        return Batch(record, [self.events[i] for i in keep])


class Destination(Protocol):
    name: str
    levels: frozenset[str]
    durable: bool

    async def deliver(self, batch: Batch) -> None: ...


class LakeDestination:
    """Every level, and the rejections too, go to the spool and from there to the raw lake."""

    name = "lake"
    levels = frozenset(LEVELS)
    durable = True

    def __init__(self, writer: SegmentWriter) -> None:
        self.writer = writer

    async def deliver(self, batch: Batch) -> None:
        ticket = self.writer.append(_record_encoder.encode(batch.record))
        await self.writer.commit(ticket)


# A best-effort destination that fails, fails for every batch (its server is down): its errors
# are logged once, then summed in a line at most this often, not a traceback per request.
FAILURE_LOG_SECS = 10.0


_ALL = frozenset(LEVELS)


class Router:
    def __init__(self, destinations: list[Destination], metrics: Metrics) -> None:
        self.durable = [d for d in destinations if d.durable]
        self.best_effort = [d for d in destinations if not d.durable]
        self.metrics = metrics
        self._failures = RepeatedFailures(log, FAILURE_LOG_SECS)

    async def route(self, batch: Batch) -> None:
        """Return once the batch is durable; raises what the durable destination raised."""
        for dest in self.durable:
            await dest.deliver(batch if dest.levels == _ALL else batch.only(dest.levels))
        # Per tenant, once durable: what a tenant's own Pipeline view shows (a tenant's read key
        # must not see the server-wide totals, which count every tenant).
        tenant = batch.record.tenant
        if batch.events:
            self.metrics.inc("beaconlake_tenant_events_accepted_total", len(batch.events), tenant=tenant)
        for rej in batch.record.rejected:
            self.metrics.inc("beaconlake_tenant_events_rejected_total", tenant=tenant, reason=rej.reason)
        for dest in self.best_effort:
            part = batch if dest.levels == _ALL else batch.only(dest.levels)
            if not part.events:
                continue
            try:
                await dest.deliver(part)
            except Exception as exc:  # a best-effort destination must never fail an acknowledged request
                self.metrics.inc("beaconlake_destination_failures_total", destination=dest.name)
                self._failures.failed(f"destination {dest.name}", exc,
                                      f"destination {dest.name} failed on a batch of {len(part.events)} events")


def build_router(writer: SegmentWriter, metrics: Metrics, extra: list[Destination] | None = None) -> Router:
    """The lake first (durable), then ``extra``: best-effort destinations such as realtime stats."""
    return Router([LakeDestination(writer), *(extra or [])], metrics)
