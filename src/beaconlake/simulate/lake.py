"""Simulated visits straight into the raw lake, the way delivery writes them.

Each visit becomes one acknowledged request (a ``SpoolRecord``, as the collector spools it) in a
spool segment of a private spool folder; lake delivery's own ``Deliverer.deliver_segment`` then
writes the segment's Parquet files. So the raw lake holds exactly what it would after the tracker
posted these events through the collector, without HTTP: enrichment (parsed user agent,
anonymised IP), clock-skew correction and the file layout all come from the ingest code.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec

from beaconlake.config import Settings
from beaconlake.ingest import spool
from beaconlake.ingest.collector.enrich import user_agent
from beaconlake.ingest.deliver import Deliverer
from beaconlake.simulate.visitor import Visit
from beaconlake.types import SpoolRecord

VISITS_PER_SEGMENT = 2000
NETWORK_MS = 80  # from the tracker's send to the collector's clock
_encoder = msgspec.msgpack.Encoder()
_json = msgspec.json.Encoder()


def write_raw_lake(settings: Settings, visits: Iterable[Visit], ip: str = "192.0.2.0") -> int:
    """Write the visits' events to ``settings``' raw lake; returns how many events were written.

    The tracker sends a visit's events at the end of it here (one batch per visit; the real one
    sends every few seconds): ``sent_at`` is the last event's time plus a moment, and the collector
    receives it ``NETWORK_MS`` later, so ``event_ts`` equals ``client_ts`` plus that."""
    tenant = settings.tenants[0].id if settings.tenants else None
    if tenant is None:
        raise ValueError("write_raw_lake: the settings declare no tenant; add a [[tenants]] entry")
    root = Path(settings.data_dir) / "run" / "simulate-spool"
    shutil.rmtree(root, ignore_errors=True)  # leftovers of an interrupted call were never delivered
    # Sequence detection and statistics are the collector's and deliverer's live work, not the lake's.
    deliverer = Deliverer(msgspec.structs.replace(settings, realtime=msgspec.structs.replace(
        settings.realtime, enabled=False)))
    written = 0
    batch: list[bytes] = []
    try:
        for visit in visits:
            if not visit.events:
                continue
            sent_at = visit.events[-1]["client_ts"] + 500
            record = SpoolRecord(tenant=tenant, received_at=sent_at + NETWORK_MS, sent_at=sent_at, ip=ip,
                                 user_agent=visit.user_agent, ua=user_agent(visit.user_agent),
                                 body=_json.encode({"sent_at": sent_at, "events": visit.events}),
                                 accepted=None, rejected=[])
            batch.append(_encoder.encode(record))
            written += len(visit.events)
            if len(batch) >= VISITS_PER_SEGMENT:
                _deliver(root, batch, deliverer)
                batch = []
        if batch:
            _deliver(root, batch, deliverer)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return written


def _deliver(root: Path, records: list[bytes], deliverer: Deliverer) -> None:
    """One spool segment of these records, sealed, then delivered by lake delivery."""
    deliverer.deliver_segment(spool.write_sealed_segment(root, f"{int(time.time() * 1000):013d}-simulate-"
                                                               f"{secrets.token_hex(4)}", records))
