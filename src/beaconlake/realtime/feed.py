"""The events of a sealed spool segment, as the realtime consumer reads them.

Decoded by ``lake.records``, the decoder lake delivery uses too: the same accept/undeliverable
decision, the same event ids (derived ones included) and the same clock-skew-corrected
``event_ts``, so a high-level event's ``matched_event_ids`` name rows that are in the lake and
realtime never counts an event the lake refuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from beaconlake.lake import segment
from beaconlake.lake.records import ROW_ERRORS, LakeEvent, read_record, record_events


def segment_events(path: Path) -> Iterator[tuple[str, LakeEvent]]:
    """(tenant, event) for every accepted event of the segment the lake can store, in order.
    What cannot be stored is skipped: lake delivery keeps it in ``lake/rejected``. Raises
    SpoolCorrupt when the file is no readable segment, OSError when it cannot be read."""
    name = path.stem
    for rec_no, payload in enumerate(segment.read_frames(path)):
        try:
            rec = read_record(payload)
        except ROW_ERRORS:
            continue
        events, _ = record_events(rec, name, rec_no)
        for ev in events:
            yield rec.tenant, ev
