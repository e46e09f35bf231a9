"""The spool segment format: the one home of its bytes (writers and readers import it).

Version 2 (written since the reliability work)::

    header   b"BLSPOOL2" | salt (8 random bytes) | u32 crc32(magic + salt)
    frame    SYNC (4 bytes) | u32 length | u32 crc | payload
    trailer  SYNC | u32 0xFFFFFFFF | u32 crc | u8 kind | u32 frames | u64 offset of the trailer

A frame's crc is crc32(salt + length + payload): it covers the length, so a flipped length
cannot send the reader off into the next frames, and it is keyed by the segment's salt, so a
request body that happens to contain a well-formed frame (a client can send any bytes) never
passes for one, even when the reader resynchronises inside that body. After damage the
reader scans for the next SYNC whose frame checks out and goes on from there: one flipped
byte costs the frame it hit, not the rest of the segment.

A writer that seals a segment appends a ``clean`` trailer (it counts the frames); the
deliverer that seals the segment of a writer that died appends a ``recovered`` trailer.
Only the latter may end in a torn frame (a write cut short by the crash, never acknowledged:
acknowledgement waits for the fsync that covers the frame), so damage anywhere else, or a
sealed segment without its trailer, is corruption: the reader reports it, byte range by
byte range, and the deliverer parks the segment instead of deleting it.

Version 1 (``BLSPOOL1``, frames ``[u32 length][u32 crc32(payload)][payload]``, no trailer)
is still read: frames up to the first bad one; a bad frame that runs past the end of the
file is a torn tail, any other is corruption (reported up to the end: v1 cannot resync).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from beaconlake.errors import SpoolCorrupt

MAGIC_V1 = b"BLSPOOL1"
MAGIC = b"BLSPOOL2"
SALT_BYTES = 8
HEADER = struct.Struct("<8s8sI")  # magic, salt, crc32(magic + salt)
SYNC = b"\xfdBL\xfe"  # 0xfd and 0xfe never occur in UTF-8 text such as a JSON body
FRAME = struct.Struct("<4sII")  # sync, length, crc
TRAILER_LENGTH = 0xFFFFFFFF
TRAILER_BODY = struct.Struct("<BIQ")  # kind, frames, offset of the trailer
TRAILER_SIZE = FRAME.size + TRAILER_BODY.size
MAX_PAYLOAD_BYTES = TRAILER_LENGTH - 1
CLEAN, RECOVERED = 1, 2  # trailer kinds: sealed by its writer / by the deliverer after the writer died
_V1_FRAME = struct.Struct("<II")
_LENGTH = struct.Struct("<I")
_TRAILER_LENGTH_BYTES = _LENGTH.pack(TRAILER_LENGTH)


# -- writing ---------------------------------------------------------------------------------


def header(salt: bytes) -> bytes:
    return HEADER.pack(MAGIC, salt, zlib.crc32(MAGIC + salt))


def seed_of(salt: bytes) -> int:
    """The running crc that every frame's crc of this segment starts from."""
    return zlib.crc32(salt)


def frame(seed: int, payload: bytes) -> bytes:
    length = len(payload)
    if length > MAX_PAYLOAD_BYTES:
        raise ValueError(f"a spool frame holds at most {MAX_PAYLOAD_BYTES} bytes, got {length}")
    length_bytes = _LENGTH.pack(length)
    return SYNC + length_bytes + _LENGTH.pack(zlib.crc32(payload, zlib.crc32(length_bytes, seed))) + payload


def trailer(seed: int, kind: int, frames: int, offset: int) -> bytes:
    body = TRAILER_BODY.pack(kind, frames, offset)
    crc = zlib.crc32(body, zlib.crc32(_TRAILER_LENGTH_BYTES, seed))
    return FRAME.pack(SYNC, TRAILER_LENGTH, crc) + body


# -- reading ---------------------------------------------------------------------------------


@dataclass
class Scan:
    """What reading a segment found. ``frames`` are the payloads that check out, in order;
    ``unreadable`` the byte ranges ``[start, end)`` that are not (corruption); ``torn_tail``
    the range of a torn last write in a segment whose writer died (expected, not corruption)."""

    size: int
    version: int | None  # None: not a spool segment (or its header is damaged)
    frames: list[bytes] = field(default_factory=list)
    unreadable: list[tuple[int, int]] = field(default_factory=list)
    torn_tail: tuple[int, int] | None = None
    sealed: str | None = None  # "clean", "recovered", or None (no trailer)
    frames_expected: int | None = None  # from a clean trailer
    problems: list[str] = field(default_factory=list)  # what is wrong, for logs and reports

    @property
    def holds_no_frame(self) -> bool:
        """Empty, or a whole header and nothing after: nothing in it was ever acknowledged."""
        header_bytes = {1: len(MAGIC_V1), 2: HEADER.size}.get(self.version or 0, 0)
        return self.size <= header_bytes

    @property
    def corrupt(self) -> bool:
        return bool(self.problems)

    @property
    def unreadable_bytes(self) -> int:
        return sum(end - start for start, end in self.unreadable)

    def report(self) -> dict:
        return {
            "format_version": self.version, "size_bytes": self.size, "sealed": self.sealed,
            "frames_recovered": len(self.frames), "frames_expected": self.frames_expected,
            "unreadable_byte_ranges": [list(r) for r in self.unreadable],
            "unreadable_bytes": self.unreadable_bytes,
            "torn_tail_byte_range": list(self.torn_tail) if self.torn_tail else None,
            "problems": self.problems,
        }


def header_size(data: bytes) -> int:
    """Bytes of header this segment starts with (its format's), for 'holds no frame' checks."""
    return len(MAGIC_V1) if data.startswith(MAGIC_V1) else HEADER.size


def scan(data: bytes) -> Scan:
    """Read a whole segment's bytes. Never raises: whatever is wrong is in the result."""
    if data.startswith(MAGIC_V1):
        return _scan_v1(data)
    size = len(data)
    if size < HEADER.size or not data.startswith(MAGIC):
        return Scan(size, None, unreadable=[(0, size)] if size else [],
                    problems=[f"not a beaconlake spool segment (header {bytes(data[:8])!r})"])
    magic, salt, crc = HEADER.unpack_from(data)
    if zlib.crc32(magic + salt) != crc:
        return Scan(size, None, unreadable=[(0, size)], problems=["the segment header fails its crc32 check"])
    return _scan_v2(data, seed_of(salt))


def _scan_v2(data: bytes, seed: int) -> Scan:
    view = memoryview(data)
    out = Scan(len(data), 2)
    end = len(data)
    pos = HEADER.size
    bad_start: int | None = None  # start of the damaged run being crossed
    trailer_at: int | None = None
    frames_before_trailer = 0
    while pos < end:
        if data.startswith(SYNC, pos) and pos + FRAME.size <= end:
            _, length, crc = FRAME.unpack_from(data, pos)
            body_at = pos + FRAME.size
            if length == TRAILER_LENGTH:
                body_end = body_at + TRAILER_BODY.size
                if body_end <= end and zlib.crc32(view[body_at:body_end], zlib.crc32(_TRAILER_LENGTH_BYTES, seed)) == crc:
                    if bad_start is not None:
                        out.unreadable.append((bad_start, pos))
                        bad_start = None
                    kind, count, offset = TRAILER_BODY.unpack_from(data, body_at)
                    if trailer_at is None:
                        trailer_at, frames_before_trailer = pos, len(out.frames)
                        out.sealed = "clean" if kind == CLEAN else "recovered"
                        out.frames_expected = count if kind == CLEAN else None
                    pos = body_end
                    continue
            elif body_at + length <= end and zlib.crc32(view[body_at:body_at + length],
                                                        zlib.crc32(view[pos + 4:pos + 8], seed)) == crc:
                if bad_start is not None:
                    out.unreadable.append((bad_start, pos))
                    bad_start = None
                out.frames.append(data[body_at:body_at + length])
                pos = body_at + length
                continue
        if bad_start is None:
            bad_start = pos
        found = data.find(SYNC, pos + 1)
        pos = end if found == -1 else found
    if bad_start is not None:
        out.unreadable.append((bad_start, end))
    _judge_v2(out, trailer_at, frames_before_trailer)
    return out


def _judge_v2(out: Scan, trailer_at: int | None, frames_before_trailer: int) -> None:
    """Tell a torn tail (expected after a crash) from corruption (anything else)."""
    if out.sealed == "recovered":
        # the damaged run just before a recovered trailer is the writer's last write, cut
        # short when it died; damage anywhere else is not explained by a crash
        for i, (_, stop) in enumerate(out.unreadable):
            if stop == trailer_at:
                out.torn_tail = out.unreadable.pop(i)
                break
    if out.sealed is None:
        out.problems.append("no trailer: the segment was not sealed, or its end is damaged or cut off")
    elif trailer_at is not None and frames_before_trailer != len(out.frames):
        out.problems.append(f"{len(out.frames) - frames_before_trailer} frame(s) after the trailer")
    if out.frames_expected is not None and out.frames_expected != frames_before_trailer:
        out.problems.append(f"the trailer counts {out.frames_expected} frames, {frames_before_trailer} read before it")
    for start, stop in out.unreadable:
        out.problems.append(f"bytes {start}-{stop} unreadable ({stop - start} bytes), resynchronised after them")


def _scan_v1(data: bytes) -> Scan:
    out = Scan(len(data), 1)
    pos, end = len(MAGIC_V1), len(data)
    while pos < end:
        if end - pos < _V1_FRAME.size:
            out.torn_tail = (pos, end)
            break
        length, crc = _V1_FRAME.unpack_from(data, pos)
        body = data[pos + _V1_FRAME.size:pos + _V1_FRAME.size + length]
        if len(body) < length:
            out.torn_tail = (pos, end)  # runs past the end: a write cut short
            break
        if zlib.crc32(body) != crc:
            out.unreadable.append((pos, end))
            out.problems.append(f"bytes {pos}-{end} unreadable: the frame at byte {pos} fails its crc32 check "
                                "(a version 1 segment cannot resynchronise)")
            break
        out.frames.append(body)
        pos += _V1_FRAME.size + length
    return out


def read(path: Path) -> Scan:
    """Scan a segment file; raises only OSError (the file cannot be read)."""
    return scan(path.read_bytes())


def read_frames(path: Path) -> Iterator[bytes]:
    """Every payload that checks out (what ``read`` finds), for readers that only need those.
    Raises SpoolCorrupt when the file is not a readable segment at all (an empty one holds
    nothing), OSError when it cannot be read."""
    result = read(path)
    if result.version is None and not result.holds_no_frame:
        raise SpoolCorrupt(f"{path}: {result.problems[0]}")
    yield from result.frames


def tail_is_trailer(data_head: bytes, data_tail: bytes) -> bool:
    """Whether a v2 segment whose first bytes are ``data_head`` ends with a valid trailer
    (``data_tail``: its last ``TRAILER_SIZE`` bytes). Used before sealing an orphan, so a
    segment its writer had sealed already is not sealed twice."""
    if len(data_head) < HEADER.size or not data_head.startswith(MAGIC) or len(data_tail) != TRAILER_SIZE:
        return False
    magic, salt, crc = HEADER.unpack_from(data_head)
    if zlib.crc32(magic + salt) != crc:
        return False
    sync, length, frame_crc = FRAME.unpack_from(data_tail)
    body = data_tail[FRAME.size:]
    seed = seed_of(salt)
    return sync == SYNC and length == TRAILER_LENGTH and zlib.crc32(body, zlib.crc32(_TRAILER_LENGTH_BYTES, seed)) == frame_crc


def salt_of(data_head: bytes) -> bytes | None:
    """The salt of a v2 segment from its first bytes, or None when the header is not whole."""
    if len(data_head) < HEADER.size or not data_head.startswith(MAGIC):
        return None
    magic, salt, crc = HEADER.unpack_from(data_head)
    return salt if zlib.crc32(magic + salt) == crc else None
