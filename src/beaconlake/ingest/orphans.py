"""Sealing the segments of writers that died, while the others keep writing.

A writer takes an exclusive flock on its segment before the file gets its ``.seg`` name, and
holds it until the segment is sealed (renamed to ``sealed/``). The kernel drops a flock when
its process dies, SIGKILL included. So a ``new/*.seg`` that can be locked has no live writer:
it is sealed here, with a ``recovered`` trailer (a torn last write before it is expected), and
delivered like any other. A live writer's segment cannot be locked, and is never touched.

A file that holds no frame (header only, or a ``.open`` file whose writer died before naming
it) held no acknowledged event: it is removed quietly.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

from beaconlake.files import fsync_dir
from beaconlake.ingest.spooldir import OPENING, SUFFIX, spool_dirs
from beaconlake.lake import segment

log = logging.getLogger(__name__)
# A writer locks its ``.open`` file microseconds after creating it; one older than this whose
# lock is free was left by a writer that died before naming it.
OPENING_GRACE_SECS = 60.0


def seal_orphans(root: Path) -> list[Path]:
    """Seal every unlocked segment in ``new/``; return where they went (in ``sealed/``)."""
    new_dir, sealed_dir = spool_dirs(root)
    sealed: list[Path] = []
    removed = 0
    for path in sorted(new_dir.iterdir()):
        if path.suffix not in (SUFFIX, OPENING):
            continue
        if path.suffix == OPENING and _younger_than(path, OPENING_GRACE_SECS):
            continue  # a writer may be between creating it and locking it
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:  # sealed by its writer meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer holds it
            if not _still_there(fd, path):
                continue  # its writer sealed it between our open and our lock
            outcome = _seal(fd, path, sealed_dir)
        finally:
            os.close(fd)
        if outcome is None:
            removed += 1
        else:
            sealed.append(outcome)
    if sealed or removed:
        fsync_dir(new_dir)
    if sealed:
        fsync_dir(sealed_dir)
        log.info("sealed %d segment(s) of writers that are gone: %s", len(sealed), ", ".join(p.name for p in sealed))
    return sealed


def _younger_than(path: Path, secs: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < secs
    except FileNotFoundError:
        return True


def _still_there(fd: int, path: Path) -> bool:
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


def _seal(fd: int, path: Path, sealed_dir: Path) -> Path | None:
    size = os.fstat(fd).st_size
    head = os.pread(fd, segment.HEADER.size, 0)
    if path.suffix == OPENING or size <= segment.header_size(head):
        path.unlink()
        log.debug("removed %s: it holds no frame", path.name)
        return None
    salt = segment.salt_of(head)
    if salt is not None:
        tail = os.pread(fd, segment.TRAILER_SIZE, size - segment.TRAILER_SIZE) if size >= segment.TRAILER_SIZE else b""
        if not segment.tail_is_trailer(head, tail):
            _append_trailer(fd, path, salt, size)
    # A v1 segment, or one whose header is damaged, goes as it is: the reader says what it is.
    target = sealed_dir / path.name
    os.replace(path, target)
    return target


def _append_trailer(fd: int, path: Path, salt: bytes, size: int) -> None:
    trailer = segment.trailer(segment.seed_of(salt), segment.RECOVERED, 0, size)
    try:
        written = os.write(fd, trailer)
        if written != len(trailer):
            raise OSError(f"short write: {written} of {len(trailer)} bytes")
        os.fsync(fd)
    except OSError as exc:
        # Without its trailer the reader treats the segment as damaged at the end: it still
        # delivers every whole frame, then parks the segment with a report. Nothing is lost.
        log.warning("could not append the recovered trailer to %s (%s); sealing it without one", path.name, exc)
        try:
            os.ftruncate(fd, size)
        except OSError:
            pass
