"""The durable spool: append-only segments, group-committed with fsync.

Each writing process appends to a segment of its own in ``spool/new/``, sealed into
``spool/sealed/`` by age or size, delivered to the lake, deleted only once its files are
durable (``deliver.py``). Folders: ``spooldir.py``; bytes on disk: ``segment.py``.

Group commit: a request takes a frame (buffered, its disk budget taken) and waits for a sync
pass. One pass runs at a time: it writes every frame taken since the last with one
``writev(2)`` (page cache), then fsyncs in a thread; when it ends, the next starts at once and
covers every frame taken meanwhile, so concurrent requests share a write and an fsync and no
request waits for a timer tick. With ``durability = "os"`` (no fsync, nothing to wait for)
each frame is written when it is taken. Segment files and their writes: ``segfile.py``.

What a writer promises, whatever fails:

* a frame is acknowledged (``commit`` returns) only once an fsync covers it;
* the writer flocks its segment from before the file has its ``.seg`` name until it is
  sealed, so the deliverer can seal the segment of a writer that died (``orphans.py``)
  and never the segment of one that lives;
* a failed write leaves neither a torn frame (the file is truncated back), nor a file that
  holds no frame, nor an open descriptor behind it;
* a failed write or fsync fails exactly the frames it covered (their commits raise; none was
  acknowledged), and cuts them off the segment: back to its size the last fsync covered
  (a segment that cannot be cut is abandoned to the deliverer's orphan sweep);
* a trailer is written after every frame taken into its segment (buffered frames go first,
  in the same write, also at shutdown: ``close_sync``), never before one;
* a write that would take the disk under ``min_free_disk_bytes`` plus the deliverer's
  reserve is refused before it is made (``budget.py``), with ``SpoolFull`` (ENOSPC).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from beaconlake.config import SpoolSettings
from beaconlake.files import fsync_dir
from beaconlake.ingest.budget import DiskBudget, SpoolFull, delivery_reserve_bytes
from beaconlake.ingest.orphans import seal_orphans
from beaconlake.ingest.segfile import FLAGS, GroupWrite, OpenSegment, write_all, write_out, write_sealed_segment
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
        self._current: OpenSegment | None = None
        self._retiring: list[OpenSegment] = []
        self._written = 0  # frames taken: the last ticket handed out
        self._synced = 0  # every ticket up to this one is durable, or lost
        # Ticket ranges whose write or fsync failed, merged when adjacent: a commit of one raises.
        self._lost: list[tuple[int, int, OSError]] = []
        self._lost_last = 0  # the newest ticket lost: a commit past it looks at no range
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._sync_task: asyncio.Task[None] | None = None
        self._dir_dirty = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-fsync")
        self.bytes_written = 0
        self.failure: str | None = None  # why the last write failed, until one succeeds again
        self._failed_at = 0  # the last ticket handed out when ``failure`` was set
        self.write_failures = 0  # writes refused or failed (the collector counts and resets it)

    # -- writing -------------------------------------------------------------------------

    def _open_segment(self) -> OpenSegment:
        self._seq += 1
        stem = f"{int(time.time() * 1000):013d}-{self._prefix}-{self._seq:06d}"
        opening, path = self.new_dir / f"{stem}{OPENING}", self.new_dir / f"{stem}{SUFFIX}"
        salt = secrets.token_bytes(segment.SALT_BYTES)
        head = segment.header(salt)
        reserved = len(head) + segment.TRAILER_SIZE
        self.budget.take(reserved)
        try:
            fd = os.open(opening, FLAGS | os.O_APPEND, 0o644)
        except OSError:
            self.budget.give_back(reserved)
            raise
        try:
            # Locked before it has its .seg name: the orphan sweep can never lock a live segment.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            write_all(fd, head, opening)
            os.rename(opening, path)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                opening.unlink()
            self.budget.give_back(reserved)
            raise
        self._dir_dirty = True
        # The header alone needs no fsync (it holds nothing acknowledged); the first frames' does it.
        return OpenSegment(path, fd, time.monotonic(), len(head), segment.seed_of(salt), durable=len(head))

    def append(self, payload: bytes) -> int:
        """Take one frame; return the ticket to pass to ``commit``. Raises OSError: SpoolFull
        when the disk budget is spent, or what the disk said (e.g. ENOSPC, EMFILE).

        With durability "fsync" the frame is buffered and written by the next sync pass, in
        one writev(2) with every frame taken before it; with "os" it is written now."""
        try:
            seg = self._current
            if seg is None:
                seg = self._current = self._open_segment()
            frame = segment.frame(seg.seed, payload)
            self.budget.take(len(frame), buffered=self.fsync)
            if self.fsync:
                if not seg.buffered:
                    seg.first_ticket = self._written + 1
                seg.buffered.append(frame)
                seg.buffered_bytes += len(frame)
            else:
                try:
                    write_all(seg.fd, frame, seg.path)
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
        self._written += 1
        if not self.fsync:
            seg.durable = seg.size
            self.bytes_written += len(frame)
            self.failure = None
        ticket = self._written
        if seg.size >= self.max_segment_bytes:
            self._retire()
        return ticket

    def _failed(self, exc: OSError, count: int = 1) -> None:
        self.failure = f"the last spool write failed: {exc.strerror or exc}"
        self._failed_at = self._written
        self.write_failures += count

    def _truncate_back(self, seg: OpenSegment) -> None:
        """Cut what was written after ``seg.durable`` off, so the segment holds no torn or
        unacknowledged frame."""
        try:
            os.ftruncate(seg.fd, seg.durable)
        except OSError as exc:
            # It keeps a torn frame at its end: close it as a crashed writer would leave it,
            # and the deliverer's orphan sweep seals it with the tear recognised as such.
            log.error("cannot truncate spool segment %s after a failed write (%s); abandoning it", seg.path.name, exc)
            self._abandon(seg, exc)

    def _abandon(self, seg: OpenSegment, exc: OSError) -> None:
        """Close ``seg`` without a trailer (its buffered frames fail); removed if it holds no frame."""
        if seg.buffered:
            self._lose(seg.first_ticket, len(seg.buffered), seg.buffered_bytes, seg, exc)
            seg.buffered, seg.buffered_bytes = [], 0
        if seg is self._current:
            self._current = None
        elif seg in self._retiring:
            self._retiring.remove(seg)
        if seg.frames == 0:
            self._discard(seg)
            return
        seg.abandoned = True
        self._retiring.append(seg)

    def _lose(self, first: int, frames: int, nbytes: int, seg: OpenSegment, exc: OSError) -> None:
        """Frames taken that will not be in the segment: their commits raise ``exc``."""
        seg.size -= nbytes
        seg.frames -= frames
        self.budget.give_back(nbytes, buffered=True)
        last = first + frames - 1
        if self._lost and self._lost[-1][1] + 1 == first:
            first = self._lost[-1][0]
            self._lost.pop()
        self._lost.append((first, last, exc))
        self._lost_last = max(self._lost_last, last)

    def _lost_error(self, ticket: int) -> OSError | None:
        if ticket > self._lost_last:  # after one failure, every later commit would walk the ranges
            return None
        for first, last, exc in reversed(self._lost):
            if first <= ticket <= last:
                return exc
        return None

    def _drop_if_empty(self) -> None:
        """A segment that holds no frame holds nothing acknowledged: close and remove it."""
        seg = self._current
        if seg is not None and seg.frames == 0:
            self._current = None
            self._discard(seg)

    def _discard(self, seg: OpenSegment) -> None:
        with contextlib.suppress(OSError):
            seg.path.unlink()
        os.close(seg.fd)
        self.budget.give_back(seg.size + segment.TRAILER_SIZE)

    async def commit(self, ticket: int) -> None:
        """Return once the frame behind ``ticket`` is durable (per ``spool.durability``); raise
        the OSError of its failed write or fsync if it never will be."""
        if not self.fsync:
            self._close_retired()
            return
        if self._lost:
            exc = self._lost_error(ticket)
            if exc is not None:
                raise exc
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
            target, writes, dir_dirty = self._start_pass()
            error = None
            if writes or dir_dirty:
                # The write here, on the loop, rather than in the fsync thread: measured the same
                # CPU a frame (docs/performance.md), and segment state stays one thread's, so
                # close_sync after a loop that stopped mid-pass finds it as the files are.
                write_out(writes)
                done = self._pool.submit(self._sync_files, writes, dir_dirty)
                try:
                    error = await asyncio.shield(asyncio.wrap_future(done, loop=loop))
                except asyncio.CancelledError:
                    # The loop is going away mid-pass: settle the pass (once its fsync ends), so
                    # the writer's state stays what its files are, then stop.
                    self._end_pass(target, writes, dir_dirty, done.result())
                    raise
            self._end_pass(target, writes, dir_dirty, error)

    def _start_pass(self) -> tuple[int, list[GroupWrite], bool]:
        """What a sync pass writes and fsyncs: every frame taken so far, and due trailers."""
        writes = []
        for seg in (*self._retiring, self._current):
            if seg is None or seg.abandoned or seg.trailed or not (seg.buffered or seg.sealing):
                continue
            parts, seg.buffered = seg.buffered, []
            w = GroupWrite(seg, parts, seg.buffered_bytes, len(parts), seg.first_ticket, seg.sealing)
            seg.buffered_bytes = 0
            if seg.sealing:  # no frame can follow: the segment takes no more
                parts.append(segment.trailer(seg.seed, segment.CLEAN, seg.frames, seg.size))
            writes.append(w)
        dir_dirty, self._dir_dirty = self._dir_dirty, False
        return self._written, writes, dir_dirty

    def _sync_files(self, writes: list[GroupWrite], dir_dirty: bool) -> OSError | None:
        try:
            for w in writes:
                if w.error is None:
                    os.fsync(w.seg.fd)
            if dir_dirty:
                fsync_dir(self.new_dir)
        except OSError as exc:
            return exc
        return None

    def _end_pass(self, target: int, writes: list[GroupWrite], dir_dirty: bool, error: OSError | None,
                  resolve: bool = True) -> None:
        """Settle a pass: frames covered by its fsync are durable; those of a failed write or
        fsync are cut off their segment (none was acknowledged) and their commits raise."""
        if error is not None:
            log.error("spool fsync failed: %s", error)
            self._failed(error)
            self._dir_dirty = self._dir_dirty or dir_dirty
        kept = 0
        for w in writes:
            seg = w.seg
            if w.error is None and error is None:
                seg.durable += w.frame_bytes
                if w.trailer:
                    seg.durable += segment.TRAILER_SIZE
                    seg.size += segment.TRAILER_SIZE
                    seg.trailed = True
                kept += w.frame_bytes
                self.budget.written(w.frame_bytes)
                continue
            if w.error is not None:
                log.error("spool write to %s failed: %s", seg.path.name, w.error)
                self._failed(w.error, w.frames)
            if w.frames:
                self._lose(w.first_ticket, w.frames, w.frame_bytes, seg, w.error or error)
            self._truncate_back(seg)
            if seg.abandoned:
                continue
            if w.trailer or (seg is not self._current and seg.frames == 0):
                # Its trailer did not hold: the orphan sweep seals what is durable in it (or it
                # is removed, holding no frame), rather than this writer retrying for ever.
                self._abandon(seg, w.error or error)
            elif seg is self._current and w.error is None:
                # The fsync failed: later frames go after its trailer is due, then to a fresh segment.
                self._retire()
            else:
                self._drop_if_empty()
        self.bytes_written += kept
        if kept and target > self._failed_at:
            self.failure = None
        self._synced = max(self._synced, target)
        self._close_retired()
        if resolve:
            self._resolve()

    def _resolve(self) -> None:
        still = []
        for ticket, fut in self._waiters:
            if fut.done():
                continue
            exc = self._lost_error(ticket) if self._lost else None
            if exc is not None:
                fut.set_exception(exc)
            elif ticket <= self._synced:
                fut.set_result(None)
            else:
                still.append((ticket, fut))
        self._waiters = still

    # -- sealing -------------------------------------------------------------------------

    def _retire(self) -> None:
        """Stop appending to the current segment: a clean trailer (with durability "fsync", in
        the next sync pass, after its buffered frames), sealed once durable."""
        seg = self._current
        if seg is None:
            return
        self._current = None
        if seg.frames == 0:
            self._discard(seg)
            return
        self._retiring.append(seg)
        if self.fsync:
            seg.sealing = True
            return
        trailer = segment.trailer(seg.seed, segment.CLEAN, seg.frames, seg.size)
        try:
            write_all(seg.fd, trailer, seg.path)
        except OSError as exc:
            log.error("cannot write the trailer of spool segment %s (%s); the deliverer will seal it", seg.path.name, exc)
            with contextlib.suppress(OSError):
                os.ftruncate(seg.fd, seg.size)
            seg.abandoned = True
        else:
            seg.size += len(trailer)
            seg.trailed = True

    def _close_retired(self) -> None:
        """Seal retired segments whose trailer is written (with fsync: durable), in order."""
        while self._retiring:
            seg = self._retiring[0]
            if not (seg.trailed or seg.abandoned):
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
        """Seal everything without an event loop (shutdown paths): buffered frames are written
        before their segment's trailer, as in a sync pass."""
        self._pool.shutdown(wait=True)  # a pass a stopped loop left in the thread ends first
        self._retire()
        if self.fsync:
            target, writes, dir_dirty = self._start_pass()
            write_out(writes)
            error = self._sync_files(writes, dir_dirty)
            if error is not None:
                log.error("spool fsync failed on shutdown: %s", error)
            self._end_pass(target, writes, dir_dirty, error, resolve=False)
        self._close_retired()

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
                    self._failed(exc, count=0)
                    return self.failure
            self.failure = None
        return None
