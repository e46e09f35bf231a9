"""The events of a sealed spool segment, as the realtime consumer reads them.

Same decoding as lake delivery (``ingest/deliver.py``): the same clock-skew correction and
the same derived event ids for events that came without one, so a high-level event's
``matched_event_ids`` name rows that are in the lake. Lean: the fields the realtime stage
uses, a whole request's events in one decoder call.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec

from beaconlake.ingest import spool
from beaconlake.ingest.rows import ROW_ERRORS, StoredEvent, lake_event_id, split_events
from beaconlake.types import SpoolRecord


# The same shape lake delivery reads, so both stages agree on every field.
LeanEvent = StoredEvent


class _LeanEnvelope(msgspec.Struct):
    events: list[LeanEvent]


class _RawEnvelope(msgspec.Struct):
    events: list[msgspec.Raw]


_record = msgspec.msgpack.Decoder(SpoolRecord)
_lean = msgspec.json.Decoder(_LeanEnvelope)
_raw = msgspec.json.Decoder(_RawEnvelope)
_event = msgspec.json.Decoder(LeanEvent)


def event_id_of(ev: LeanEvent, where: tuple[str, int, int]) -> str:
    """The event's id as the lake has it: its own, or the one lake delivery derives from where
    it sits in the spool. Computed only for the events that need it."""
    return lake_event_id(ev.event_id or None, *where)


def segment_events(path: Path) -> Iterator[tuple[str, tuple[str, int, int], LeanEvent, int]]:
    """(tenant, where, event, event_ts) for every accepted event of the segment, in order;
    ``where`` is what ``event_id_of`` needs. Records and events that do not decode are
    skipped: lake delivery keeps them in ``lake/rejected`` (``ingest/rows.py``)."""
    segment = path.stem
    for rec_no, payload in enumerate(spool.read_frames(path)):
        try:
            rec = _record.decode(payload)
        except ROW_ERRORS:
            continue
        if not rec.body:
            continue
        events, indexes = _accepted(rec)
        skew = rec.received_at - rec.sent_at
        for idx in indexes:
            ev = events[idx]
            client_ts = ev.client_ts if ev.client_ts is not None else rec.sent_at
            yield rec.tenant, (segment, rec_no, idx), ev, client_ts + skew


def _accepted(rec: SpoolRecord) -> tuple[dict[int, LeanEvent] | list[LeanEvent], list[int] | range]:
    if rec.accepted is None:
        try:  # every event valid: the one-call path
            events = _lean.decode(rec.body).events
            return events, range(len(events))
        except ROW_ERRORS:
            pass
    try:  # some were rejected and may not even decode: take the accepted ones one by one
        raw = _raw.decode(rec.body).events
    except ROW_ERRORS:
        raw = split_events(rec.body) or []  # as lake delivery splits it
    wanted = range(len(raw)) if rec.accepted is None else rec.accepted
    one_by_one: dict[int, LeanEvent] = {}
    for i in wanted:
        if 0 <= i < len(raw) and i not in one_by_one:
            try:
                one_by_one[i] = _event.decode(raw[i])
            except ROW_ERRORS:
                continue
    return one_by_one, list(one_by_one)
