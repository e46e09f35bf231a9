"""The events of a sealed spool segment, as the realtime consumer is fed them.

Decoded once, by lake delivery's own ``SegmentRows`` (``ingest/rows.py`` over ``lake.records``):
the same accept/undeliverable decision, the same event ids (derived ones included) and the same
clock-skew-corrected ``event_ts``, so a high-level event's ``matched_event_ids`` name rows that
are in the lake and realtime never counts an event the lake refuses. The deliverer hands the
consumer the decode it then delivers (``Deliverer.events_of``); ``segment_events`` is the same
for a file on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from beaconlake.ingest.rows import segment_rows
from beaconlake.lake import segment
from beaconlake.lake.records import LakeEvent


def segment_events(path: Path) -> Iterator[tuple[str, LakeEvent]]:
    """(tenant, event) for every accepted event of the segment the lake can store, in order.
    What cannot be stored is skipped: lake delivery keeps it in ``lake/rejected``. Raises
    SpoolCorrupt when the file is no readable segment, OSError when it cannot be read."""
    frames = list(segment.read_frames(path))
    yield from segment_rows(path.stem, frames, 0).events()  # (the 0 only dates rejections of unreadable records)
