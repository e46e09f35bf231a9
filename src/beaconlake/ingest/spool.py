"""The durable spool: append-only segments, group-committed with fsync.

A segment's life is told by the folder it sits in::

    spool/new/<segment>.seg      one per writing process, appended to
    spool/sealed/<segment>.seg   complete and durable, waiting for lake delivery

Delivery deletes a sealed segment only after its Parquet files are durable. A segment is
a header followed by frames ``[u32 length][u32 crc32][payload]``; a torn frame at the tail
(a crash mid-write) is never one that was acknowledged, since acknowledgement waits for
the fsync that covers it.

Group commit: a request writes its frame with ``os.write`` (page cache, microseconds) and
waits for a sync. One fsync runs at a time, in a thread; when it ends, the next starts at
once and covers every frame written meanwhile, so concurrent requests share fsyncs and no
request waits for a timer tick.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
import shutil
import struct
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from beaconlake.config import SpoolSettings
from beaconlake.errors import BeaconlakeError, SpoolCorrupt

log = logging.getLogger(__name__)

MAGIC = b"BLSPOOL1"
FRAME = struct.Struct("<II")
SUFFIX = ".seg"
NEW = "new"
SEALED = "sealed"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def spool_dirs(root: Path) -> tuple[Path, Path]:
    new, sealed = root / NEW, root / SEALED
    new.mkdir(parents=True, exist_ok=True)
    sealed.mkdir(parents=True, exist_ok=True)
    return new, sealed


@dataclass
class _Segment:
    path: Path
    fd: int
    created: float
    size: int
    dirty: bool = False  # written since its last fsync


class SegmentWriter:
    """Appends frames to this process's own segment; never shares a file with another process."""

    def __init__(self, root: Path, settings: SpoolSettings) -> None:
        self.new_dir, self.sealed_dir = spool_dirs(root)
        self.fsync = settings.durability == "fsync"
        self.max_segment_bytes = settings.max_segment_bytes
        self.flush_interval_secs = settings.flush_interval_secs
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

    # -- writing -------------------------------------------------------------------------

    def _open_segment(self) -> _Segment:
        self._seq += 1
        name = f"{int(time.time() * 1000):013d}-{self._prefix}-{self._seq:06d}{SUFFIX}"
        path = self.new_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        os.write(fd, MAGIC)
        self._dir_dirty = True
        return _Segment(path, fd, time.monotonic(), len(MAGIC), dirty=True)

    def append(self, payload: bytes) -> int:
        """Write one frame; return the ticket to pass to ``commit``. Raises OSError (e.g. ENOSPC)."""
        seg = self._current
        if seg is None:
            seg = self._current = self._open_segment()
        frame = FRAME.pack(len(payload), zlib.crc32(payload)) + payload
        written = os.write(seg.fd, frame)
        if written != len(frame):
            # A short write leaves a torn frame; seal what is whole and let the caller answer 503.
            self._retire()
            raise OSError(f"short write to spool segment {seg.path.name}: {written} of {len(frame)} bytes")
        seg.size += written
        seg.dirty = True
        self.bytes_written += written
        self._written += 1
        ticket = self._written
        if seg.size >= self.max_segment_bytes:
            self._retire()
        return ticket

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
                log.error("spool fsync failed: %s", exc)
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
            _fsync_dir(self.new_dir)

    # -- sealing -------------------------------------------------------------------------

    def _retire(self) -> None:
        if self._current is not None:
            self._retiring.append(self._current)
            self._current = None

    def _close_retired(self) -> None:
        """Seal retired segments whose every frame is durable (all of them, after a sync)."""
        while self._retiring:
            seg = self._retiring[0]
            if self.fsync and seg.dirty:
                return
            self._retiring.pop(0)
            os.close(seg.fd)
            os.replace(seg.path, self.sealed_dir / seg.path.name)
            if self.fsync:
                _fsync_dir(self.sealed_dir)
                _fsync_dir(self.new_dir)

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
                os.fsync(seg.fd)
        for seg in self._retiring:
            seg.dirty = False
        self._close_retired()
        self._pool.shutdown(wait=False)


# -- reading ---------------------------------------------------------------------------


def read_frames(path: Path) -> Iterator[bytes]:
    """Yield every whole frame's payload. A torn or corrupt frame ends the segment: it is
    logged (it was never acknowledged when it is the tail) and the frames before it stand."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise SpoolCorrupt(f"{path}: not a beaconlake spool segment (header {data[:8]!r})")
    pos = len(MAGIC)
    end = len(data)
    while pos < end:
        if end - pos < FRAME.size:
            log.warning("%s: torn frame header at byte %d (%d bytes), ignored", path.name, pos, end - pos)
            return
        length, crc = FRAME.unpack_from(data, pos)
        body = data[pos + FRAME.size : pos + FRAME.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            log.warning(
                "%s: frame at byte %d fails its %s check; %d trailing bytes ignored",
                path.name,
                pos,
                "length" if len(body) < length else "crc32",
                end - pos,
            )
            return
        yield body
        pos += FRAME.size + length


def lock_spool(root: Path) -> int:
    """Take the spool for this process (``up`` or ``deliver``) and return the lock's fd.

    Sealing orphans while a collector writes would pull live segments from under it, so
    only one owner at a time; the lock dies with its process, even on SIGKILL."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / "owner.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise BeaconlakeError(
            f"the spool {root} is in use by another beaconlake process (pid {owner}); stop it first"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def recover_orphans(root: Path) -> list[Path]:
    """Seal segments left in ``new/`` by processes that are gone. Call before any writer starts."""
    new_dir, sealed_dir = spool_dirs(root)
    moved = []
    for path in sorted(new_dir.glob(f"*{SUFFIX}")):
        target = sealed_dir / path.name
        os.replace(path, target)
        moved.append(target)
    if moved:
        _fsync_dir(sealed_dir)
        _fsync_dir(new_dir)
    return moved


def sealed_segments(root: Path) -> list[Path]:
    return sorted((root / SEALED).glob(f"*{SUFFIX}"))


def undelivered_bytes(root: Path) -> int:
    total = 0
    for folder in (root / NEW, root / SEALED):
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    try:
                        total += entry.stat().st_size
                    except FileNotFoundError:  # delivered meanwhile
                        pass
        except FileNotFoundError:
            pass
    return total


def free_disk_bytes(root: Path) -> int:
    return shutil.disk_usage(root).free
