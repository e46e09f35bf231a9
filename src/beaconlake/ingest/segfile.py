"""One spool segment file being written: its state, and the write calls (``spool.py`` decides
when they are made; ``segment.py`` says what the bytes are).

A frame is taken (counted in ``size``) before it is written: with ``spool.durability = "fsync"``
the frames waiting for one fsync are written together by one ``writev(2)`` just before it
(``write_out``). ``durable`` is what a failed write or fsync cuts the file back to, so a segment
never holds a frame that was neither acknowledged nor durable, nor a torn one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from beaconlake.files import fsync_dir
from beaconlake.ingest.spooldir import OPENING, SUFFIX, spool_dirs
from beaconlake.lake import segment

FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC

_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 16


@dataclass
class OpenSegment:
    path: Path
    fd: int
    created: float
    size: int  # bytes taken: written, and (durability "fsync") buffered; the trailer once written
    seed: int  # the crc seed of its salt (segment.py)
    frames: int = 0  # frames taken: written and buffered
    durable: int = 0  # bytes an fsync covers (durability "os": written): what a failure cuts it back to
    buffered: list[bytes] = field(default_factory=list)  # frames taken, written in the next sync pass
    buffered_bytes: int = 0
    first_ticket: int = 0  # the ticket of buffered[0]
    sealing: bool = False  # retired: its trailer is written after its buffered frames
    trailed: bool = False  # its trailer is written (and covered by an fsync): it can be sealed
    abandoned: bool = False  # closed without a trailer: the deliverer seals it as an orphan


@dataclass
class GroupWrite:
    """One segment's part of a sync pass: its buffered frames, and its trailer when it is sealing."""

    seg: OpenSegment
    parts: list[bytes]
    frame_bytes: int
    frames: int
    first_ticket: int
    trailer: bool
    error: OSError | None = None


def write_all(fd: int, data: bytes, path: Path) -> None:
    written = os.write(fd, data)
    if written != len(data):
        raise OSError(errno.ENOSPC, f"short write to spool segment {path.name}: {written} of {len(data)} bytes "
                                    "(disk full, or the file size limit)")


def write_parts(fd: int, parts: list[bytes], path: Path) -> None:
    """One writev(2) for a pass's frames of a segment (one more per IOV_MAX frames)."""
    for at in range(0, len(parts), _IOV_MAX):
        chunk = parts if len(parts) <= _IOV_MAX else parts[at:at + _IOV_MAX]
        want = sum(map(len, chunk))
        written = os.writev(fd, chunk)
        if written != want:
            raise OSError(errno.ENOSPC, f"short write to spool segment {path.name}: {written} of {want} bytes "
                                        "(disk full, or the file size limit)")


def write_out(writes: list[GroupWrite]) -> None:
    for w in writes:
        try:
            write_parts(w.seg.fd, w.parts, w.seg.path)
        except OSError as exc:
            w.error = exc



def write_sealed_segment(root: Path, stem: str, payloads: Iterable[bytes]) -> Path:
    """One whole segment written at once (the realtime stage's matches), fsynced, sealed.

    Written as ``new/<stem>.open`` and renamed straight into ``sealed/``: the orphan sweep
    never sees it half-written. On an error nothing is left behind."""
    new_dir, sealed_dir = spool_dirs(root)
    salt = secrets.token_bytes(segment.SALT_BYTES)
    seed = segment.seed_of(salt)
    parts = [segment.header(salt)]
    parts += [segment.frame(seed, p) for p in payloads]
    offset = sum(map(len, parts))
    parts.append(segment.trailer(seed, segment.CLEAN, len(parts) - 1, offset))
    opening, target = new_dir / f"{stem}{OPENING}", sealed_dir / f"{stem}{SUFFIX}"
    fd = os.open(opening, FLAGS, 0o644)
    try:
        write_all(fd, b"".join(parts), opening)
        os.fsync(fd)
        os.replace(opening, target)
    except OSError:
        with contextlib.suppress(OSError):
            opening.unlink()
        raise
    finally:
        os.close(fd)
    fsync_dir(sealed_dir)
    fsync_dir(new_dir)
    return target

