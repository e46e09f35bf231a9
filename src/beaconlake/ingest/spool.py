"""The durable spool: append-only segments, group-committed with fsync.

Each writing process appends to a segment of its own in ``spool/new/``, sealed into
``spool/sealed/`` by age or size, delivered to the lake, deleted only once its files are
durable (``deliver.py``). Folders: ``spooldir.py``; bytes on disk: ``segment.py``.

Group commit: a request writes its frame with ``os.write`` (page cache, microseconds) and
waits for a sync. One fsync runs at a time, in a thread; when it ends, the next starts at
once and covers every frame written meanwhile, so concurrent requests share fsyncs and no
request waits for a timer tick.

What a writer promises, whatever fails:

* a frame is acknowledged (``commit`` returns) only once an fsync covers it;
* the writer flocks its segment from before the file has its ``.seg`` name until it is
  sealed, so the deliverer can seal the segment of a writer that died (``orphans.py``)
  and never the segment of one that lives;
* a failed write leaves neither a torn frame (the file is truncated back), nor a file that
  holds no frame, nor an open descriptor behind it;
* a write that would take the disk under ``min_free_disk_bytes`` plus the deliverer's
  reserve is refused before it is made (``budget.py``), with ``SpoolFull`` (ENOSPC).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import secrets
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from beaconlake.config import SpoolSettings
from beaconlake.files import fsync_dir
from beaconlake.ingest.budget import DiskBudget, SpoolFull, delivery_reserve_bytes
from beaconlake.ingest.orphans import seal_orphans
from beaconlake.ingest.spooldir import (
    CORRUPT, NEW, OPENING, SEALED, SUFFIX, created_ms, free_disk_bytes, lock_spool,
    oldest_undelivered_ms, open_segments, parked_reports, parked_segments, sealed_segments, spool_dirs, spool_gauges,
    undelivered_bytes,
)
from beaconlake.lake import segment
from beaconlake.lake.segment import read_frames

__all__ = [
    "CORRUPT", "NEW", "OPENING", "SEALED", "SUFFIX", "DiskBudget", "SegmentWriter", "SpoolFull", "created_ms",
    "delivery_reserve_bytes", "free_disk_bytes", "lock_spool", "oldest_undelivered_ms", "open_segments",
    "parked_reports", "parked_segments", "read_frames", "recover_orphans", "seal_orphans", "sealed_segments", "spool_dirs",
    "spool_gauges", "undelivered_bytes", "write_sealed_segment",
]

log = logging.getLogger(__name__)

# At start-up (``up``, ``deliver``) and in the deliverer's every pass: the same lock-based sweep.
recover_orphans = seal_orphans
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


@dataclass
class _Segment:
    path: Path
    fd: int
    created: float
    size: int
    seed: int  # the crc seed of its salt (segment.py)
    frames: int = 0
    dirty: bool = False  # written since its last fsync
    abandoned: bool = False  # closed without a trailer: the deliverer seals it as an orphan


def _write_all(fd: int, data: bytes, path: Path) -> None:
    written = os.write(fd, data)
    if written != len(data):
        raise OSError(errno.ENOSPC, f"short write to spool segment {path.name}: {written} of {len(data)} bytes "
                                    "(disk full, or the file size limit)")


class SegmentWriter:
    """Appends frames to this process's own segment; never shares a file with another process."""

    def __init__(self, root: Path, settings: SpoolSettings) -> None:
        self.new_dir, self.sealed_dir = spool_dirs(root)
        self.fsync = settings.durability == "fsync"
        self.max_segment_bytes = settings.max_segment_bytes
        self.flush_interval_secs = settings.flush_interval_secs
        self.budget = DiskBudget(root, settings)
        # pid alone can repeat after a restart; the token makes names unique across runs.
        self._prefix = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._seq = 0
        self._current: _Segment | None = None
        self._retiring: list[_Segment] = []
        self._written = 0  # frames written
        self._synced = 0  # frames known durable
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._sync_task: asyncio.Task[None] | None = None
        self._dir_dirty = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-fsync")
        self.bytes_written = 0
        self.failure: str | None = None  # why the last write failed, until one succeeds again
        self.write_failures = 0  # writes refused or failed (the collector counts and resets it)

    # -- writing -------------------------------------------------------------------------

    def _open_segment(self) -> _Segment:
        self._seq += 1
        stem = f"{int(time.time() * 1000):013d}-{self._prefix}-{self._seq:06d}"
        opening, path = self.new_dir / f"{stem}{OPENING}", self.new_dir / f"{stem}{SUFFIX}"
        salt = secrets.token_bytes(segment.SALT_BYTES)
        head = segment.header(salt)
        reserved = len(head) + segment.TRAILER_SIZE
        self.budget.take(reserved)
        try:
            fd = os.open(opening, _FLAGS | os.O_APPEND, 0o644)
        except OSError:
            self.budget.give_back(reserved)
            raise
        try:
            # Locked before it has its .seg name: the orphan sweep can never lock a live segment.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _write_all(fd, head, opening)
            os.rename(opening, path)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                opening.unlink()
            self.budget.give_back(reserved)
            raise
        self._dir_dirty = True
        return _Segment(path, fd, time.monotonic(), len(head), segment.seed_of(salt), dirty=True)

    def append(self, payload: bytes) -> int:
        """Write one frame; return the ticket to pass to ``commit``. Raises OSError: SpoolFull
        when the disk budget is spent, or what the disk said (e.g. ENOSPC, EMFILE)."""
        try:
            seg = self._current
            if seg is None:
                seg = self._current = self._open_segment()
            frame = segment.frame(seg.seed, payload)
            self.budget.take(len(frame))
            try:
                _write_all(seg.fd, frame, seg.path)
            except OSError:
                self.budget.give_back(len(frame))
                self._truncate_back(seg)
                raise
        except OSError as exc:
            self._failed(exc)
            self._drop_if_empty()
            raise
        seg.size += len(frame)
        seg.frames += 1
        seg.dirty = True
        self.bytes_written += len(frame)
        self._written += 1
        self.failure = None
        ticket = self._written
        if seg.size >= self.max_segment_bytes:
            self._retire()
        return ticket

    def _failed(self, exc: OSError, count: bool = True) -> None:
        self.failure = f"the last spool write failed: {exc.strerror or exc}"
        if count:
            self.write_failures += 1

    def _truncate_back(self, seg: _Segment) -> None:
        """Cut a partly written frame off, so the segment stays whole."""
        try:
            os.ftruncate(seg.fd, seg.size)
        except OSError as exc:
            # It keeps a torn frame at its end: close it as a crashed writer would leave it,
            # and the deliverer's orphan sweep seals it with the tear recognised as such.
            log.error("cannot truncate spool segment %s after a failed write (%s); abandoning it", seg.path.name, exc)
            seg.abandoned = True
            self._current = None
            self._retiring.append(seg)

    def _drop_if_empty(self) -> None:
        """A segment that holds no frame holds nothing acknowledged: close and remove it."""
        seg = self._current
        if seg is not None and seg.frames == 0:
            self._current = None
            self._discard(seg)

    def _discard(self, seg: _Segment) -> None:
        with contextlib.suppress(OSError):
            seg.path.unlink()
        os.close(seg.fd)
        self.budget.give_back(seg.size + segment.TRAILER_SIZE)

    async def commit(self, ticket: int) -> None:
        """Return once the frame behind ``ticket`` is durable (per ``spool.durability``)."""
        if not self.fsync:
            self._close_retired()
            return
        if self._synced >= ticket:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((ticket, fut))
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.create_task(self._sync_loop())
        await fut

    async def _sync_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiters or self._retiring:
            target = self._written
            segments = [s for s in (*self._retiring, self._current) if s is not None and s.dirty]
            for s in segments:
                s.dirty = False
            dir_dirty, self._dir_dirty = self._dir_dirty, False
            try:
                await loop.run_in_executor(self._pool, self._sync_files, segments, dir_dirty)
            except OSError as exc:
                for _, fut in self._waiters:
                    if not fut.done():
                        fut.set_exception(exc)
                self._waiters.clear()
                self._failed(exc)
                log.error("spool fsync failed: %s", exc)
                # What the failed fsync covered was never acknowledged; new frames go to a
                # fresh segment rather than after frames whose fate the disk did not tell.
                self._retire()
                return
            self._synced = max(self._synced, target)
            self._close_retired()
            still = []
            for ticket, fut in self._waiters:
                if ticket <= target:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((ticket, fut))
            self._waiters = still

    def _sync_files(self, segments: list[_Segment], dir_dirty: bool) -> None:
        for s in segments:
            os.fsync(s.fd)
        if dir_dirty:
            fsync_dir(self.new_dir)

    # -- sealing -------------------------------------------------------------------------

    def _retire(self) -> None:
        """Stop appending to the current segment: a clean trailer now, sealed once durable."""
        seg = self._current
        if seg is None:
            return
        self._current = None
        if seg.frames == 0:
            self._discard(seg)
            return
        trailer = segment.trailer(seg.seed, segment.CLEAN, seg.frames, seg.size)
        try:
            _write_all(seg.fd, trailer, seg.path)
        except OSError as exc:
            log.error("cannot write the trailer of spool segment %s (%s); the deliverer will seal it", seg.path.name, exc)
            with contextlib.suppress(OSError):
                os.ftruncate(seg.fd, seg.size)
            seg.abandoned = True
        else:
            seg.size += len(trailer)
        seg.dirty = True
        self._retiring.append(seg)

    def _close_retired(self) -> None:
        """Seal retired segments whose every frame is durable (all of them, after a sync)."""
        while self._retiring:
            seg = self._retiring[0]
            if self.fsync and seg.dirty:
                return
            self._retiring.pop(0)
            try:
                if not seg.abandoned:
                    os.replace(seg.path, self.sealed_dir / seg.path.name)
                    if self.fsync:
                        fsync_dir(self.sealed_dir)
                        fsync_dir(self.new_dir)
            except OSError as exc:
                log.error("cannot seal spool segment %s (%s); the deliverer will seal it", seg.path.name, exc)
            finally:
                # Unlocked only now: until it is in sealed/, the orphan sweep must not touch it.
                os.close(seg.fd)

    async def seal_if_due(self) -> None:
        """Seal the current segment once it is ``flush_interval_secs`` old, so events reach the lake."""
        seg = self._current
        if seg is not None and time.monotonic() - seg.created >= self.flush_interval_secs:
            await self.seal()

    async def seal(self) -> None:
        self._retire()
        if not self.fsync:
            self._close_retired()
            return
        if self._retiring:
            if self._sync_task is None or self._sync_task.done():
                self._sync_task = asyncio.create_task(self._sync_loop())
            await self._sync_task

    def close_sync(self) -> None:
        """Seal everything without an event loop (shutdown paths)."""
        self._retire()
        for seg in self._retiring:
            if self.fsync:
                try:
                    os.fsync(seg.fd)
                except OSError as exc:  # nothing it covers was acknowledged; seal what is there
                    log.error("spool fsync failed on shutdown: %s", exc)
            seg.dirty = False
        self._close_retired()
        self._pool.shutdown(wait=False)

    # -- health --------------------------------------------------------------------------

    def unwritable_reason(self, min_bytes: int = 0) -> str | None:
        """Why a write of ``min_bytes`` cannot be taken now, or None when it can.

        Re-measures the disk budget; after a failed write, probes whether its cause is gone
        by opening a segment (a descriptor and a header on disk: what the next write needs
        first). So the collector's readiness follows the spool without a restart."""
        try:
            self.budget.refresh()
        except OSError as exc:
            return f"cannot measure the spool's free disk space: {exc}"
        need = min_bytes + segment.FRAME.size + (0 if self._current else segment.HEADER.size + segment.TRAILER_SIZE)
        if self.budget.available < need:
            return self.budget.shortfall(need)
        if self.failure is not None:
            if self._current is None:
                try:
                    self._current = self._open_segment()
                except OSError as exc:
                    self._failed(exc, count=False)
                    return self.failure
            self.failure = None
        return None


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
    fd = os.open(opening, _FLAGS, 0o644)
    try:
        _write_all(fd, b"".join(parts), opening)
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

