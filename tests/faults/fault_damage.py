"""Damage on purpose: bytes of a sealed spool segment flipped or cut, and what that destroys.

The fault tests and ``bench/soak`` corrupt segments while delivery is paused; the events of
the frames they hit are the only ones the invariant lets go (they are in ``spool/corrupt/``
with a report), so they must be named exactly, read as lake delivery reads them.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from beaconlake.lake import segment
from beaconlake.ingest.rows import segment_rows


def frames_at(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each frame of a whole, cleanly sealed v2 segment, trailer excluded."""
    out, pos = [], segment.HEADER.size
    while pos < len(data):
        _, length, _ = segment.FRAME.unpack_from(data, pos)
        if length == segment.TRAILER_LENGTH:
            break
        out.append((pos, pos + segment.FRAME.size + length))
        pos = out[-1][1]
    return out


def event_ids(stem: str, payload: bytes) -> set[str]:
    """The lake event ids of one frame, read as lake delivery reads it."""
    raw, _ = segment_rows(stem, [payload], 0).tables()
    return {i for table in raw.values() for i in table.column("event_id").to_pylist()}


def damage(path: Path, rng: random.Random, how: str) -> set[str]:
    """Flip a byte inside one frame (``flip``), or cut the segment inside its last frame
    (``cut``); returns the event ids of the frames destroyed."""
    data = path.read_bytes()
    assert segment.scan(data).sealed == "clean", path.name
    frames = frames_at(data)
    if how == "flip":
        start, end = frames[rng.randrange(len(frames))]
        at = rng.randrange(start + segment.FRAME.size, end)  # in the payload
        fd = os.open(path, os.O_WRONLY)
        os.pwrite(fd, bytes([data[at] ^ 0xFF]), at)
        os.close(fd)
        hit = [(start, end)]
    else:
        start, end = frames[-1]
        os.truncate(path, rng.randrange(start + 1, end))
        hit = [(start, end)]
    return {i for s, e in hit for i in event_ids(path.stem, data[s + segment.FRAME.size:e])}
