"""Taking a person's events out of sealed spool segments: for an erasure (the ids are known in
clear) and for the suppression list at delivery (only their salted hashes are).

Invariant: a scrubbed segment holds the same number of frames, in the same order, and every
frame without a dropped event byte for byte. A record that held one is re-encoded with each
dropped event replaced by ``null`` in its body and its index taken out of ``accepted``, so every
other event keeps its index and record number, hence its lake ``event_id`` (an event that came
without one gets an id derived from where it sits, ``lake.records.lake_event_id``), and the lake
gets exactly the rows it would have got, minus the person's. The door's rejections of such a
record whose excerpt holds one of the ids given in clear are dropped too.

The new segment is written whole beside the old one, fsynced, and renamed over it: a reader
(the realtime consumer, lake delivery) sees the old segment or the new one, never a mix. A
damaged segment is left alone (delivery parks it with its damage report; an erasure counts it as
not scrubbed and says so).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from beaconlake.files import replace_file
from beaconlake.ingest.spooldir import SEALED, sealed_segments
from beaconlake.lake import segment
from beaconlake.lake.records import ROW_ERRORS, split_events
from beaconlake.types import SpoolRecord

log = logging.getLogger(__name__)
SCRUB_SUFFIX = ".scrub"
STALE_SCRUB_SECS = 3600  # a scrub's temporary file this old was left by a crash

# (tenant, anonymous_id, user_id) -> whether the event goes
Drops = Callable[[str, "str | None", "str | None"], bool]


class _Ids(msgspec.Struct):
    anonymous_id: str | None = None
    user_id: str | None = None


class _Envelope(msgspec.Struct):
    events: list[msgspec.Raw]


_record = msgspec.msgpack.Decoder(SpoolRecord)
_record_enc = msgspec.msgpack.Encoder()
_envelope = msgspec.json.Decoder(_Envelope)
_ids = msgspec.json.Decoder(_Ids)


def _events(body: bytes) -> list[bytes] | None:
    try:
        return [bytes(e) for e in _envelope.decode(body).events]
    except ROW_ERRORS:
        return split_events(body)


def scrub_record(payload: bytes, tenants: set[str], drops: Drops, clear_ids: frozenset[str] = frozenset()
                 ) -> tuple[bytes, int]:
    """The frame payload without the events ``drops`` selects (and the rejections whose excerpt
    holds one of ``clear_ids``), and how many events and rejections went. Records of other
    tenants than ``tenants``, and records that cannot be read, come back unchanged."""
    try:
        rec = _record.decode(payload)
    except ROW_ERRORS:
        return payload, 0
    if rec.tenant not in tenants:
        return payload, 0
    removed = 0
    rejected = [r for r in rec.rejected if not any(i in r.excerpt for i in clear_ids)]
    removed += len(rec.rejected) - len(rejected)
    events = _events(rec.body) if rec.body else []
    if events is None:  # a body no one can split: none of its events reach the lake
        if clear_ids and any(i.encode() in rec.body for i in clear_ids):
            removed += 1
            rec.body, rec.accepted = b'{"events":[]}', []
        events = []
    accepted = list(range(len(events))) if rec.accepted is None else list(rec.accepted)
    dropped = set()
    for idx in accepted:
        if 0 <= idx < len(events):
            try:
                ids = _ids.decode(events[idx])
            except ROW_ERRORS:
                continue
            if drops(rec.tenant, ids.anonymous_id, ids.user_id):
                dropped.add(idx)
    if not dropped and len(rejected) == len(rec.rejected) and not removed:
        return payload, 0
    if dropped:
        kept = [b"null" if i in dropped else e for i, e in enumerate(events)]
        rec.body = b'{"events":[' + b",".join(kept) + b"]}"
        rec.accepted = [i for i in accepted if i not in dropped]
        removed += len(dropped)
    rec.rejected = rejected
    return _record_enc.encode(rec), removed


def scrub_segment(path: Path, tenants: set[str], drops: Drops, clear_ids: frozenset[str] = frozenset()) -> int | None:
    """Rewrite the sealed segment ``path`` without the person's events (``scrub_record``);
    returns how many events and rejections went, or None when the segment is damaged and was
    left as it is. Raises OSError when it cannot be read or written."""
    scan = segment.read(path)
    if scan.corrupt or scan.version is None:
        return None
    frames, removed = [], 0
    for payload in scan.frames:
        new, gone = scrub_record(payload, tenants, drops, clear_ids)
        frames.append(new)
        removed += gone
    if removed:
        _rewrite(path, frames)
    return removed


def _rewrite(path: Path, frames: list[bytes]) -> None:
    salt = secrets.token_bytes(segment.SALT_BYTES)
    seed = segment.seed_of(salt)
    parts = [segment.header(salt), *(segment.frame(seed, p) for p in frames)]
    offset = sum(map(len, parts))
    parts.append(segment.trailer(seed, segment.CLEAN, len(frames), offset))
    replace_file(path, b"".join(parts), path.with_name(path.stem + SCRUB_SUFFIX))


def scrub_spool(root: Path, tenants: set[str], drops: Drops, clear_ids: frozenset[str] = frozenset()
                ) -> tuple[int, list[str]]:
    """``scrub_segment`` over every sealed segment of the spool at ``root``: (events and
    rejections removed, names of the segments left as they are: damaged, or unreadable now).
    A segment delivered meanwhile is skipped."""
    removed, damaged = 0, []
    for path in sealed_segments(root):
        try:
            gone = scrub_segment(path, tenants, drops, clear_ids)
        except FileNotFoundError:
            continue
        except OSError as exc:  # cannot be read or rewritten now: named like a damaged one
            log.error("cannot scrub %s: %s", path.name, exc)
            gone = None
        if gone is None:
            damaged.append(path.name)
        else:
            removed += gone
    for stale in (root / SEALED).glob(f"*{SCRUB_SUFFIX}"):
        try:
            if stale.stat().st_mtime < time.time() - STALE_SCRUB_SECS:
                stale.unlink()
        except FileNotFoundError:
            continue
    return removed, damaged
