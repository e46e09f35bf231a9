"""The group-commit write: with ``durability = "fsync"`` the frames waiting for one fsync are
written together, with one writev(2), just before it. What must hold whatever fails (the
spool's promises, ``ingest/spool.py``): a commit returns only for a frame an fsync covered; a
frame whose write or fsync failed is cut off its segment and its commit raises; no frame follows
a trailer; every frame is in the spool at most once, in the order it was taken."""

import asyncio
import contextlib
import errno
import os
import stat
import time
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beaconlake.config import SpoolSettings
from beaconlake.ingest import spool
from beaconlake.lake import segment


class Syscalls:
    """Counts the spool's write and fsync calls; makes the chosen ones fail (a torn write
    lands part of its bytes first, as a disk that fills mid-write does)."""

    def __init__(self, bad_writes=(), bad_fsyncs=(), torn=False, fsync_secs=0.0, slow_fsync_secs=0.0):
        self.slow_fsync_secs = slow_fsync_secs  # how long every other fsync takes
        self.writes = self.writevs = self.fsyncs = 0
        self.fsync_secs = fsync_secs  # how long a failing fsync takes
        self.durable: dict[int, bytes] = {}
        self.bad_writes, self.bad_fsyncs, self.torn = set(bad_writes), set(bad_fsyncs), torn
        self._write, self._writev, self._fsync = os.write, os.writev, os.fsync

    def write(self, fd, data):
        self.writes += 1
        return self._write(fd, data)

    def writev(self, fd, buffers):
        n, self.writevs = self.writevs, self.writevs + 1
        if n in self.bad_writes:
            if not self.torn:
                raise OSError(errno.EIO, "injected write failure")
            data = b"".join(buffers)
            return self._write(fd, data[:max(1, len(data) // 2)])  # short: the spool sees ENOSPC
        return self._writev(fd, buffers)

    def fsync(self, fd):
        n, self.fsyncs = self.fsyncs, self.fsyncs + 1
        if n in self.bad_fsyncs:
            time.sleep(self.fsync_secs)
            raise OSError(errno.EIO, "injected fsync failure")
        time.sleep(self.slow_fsync_secs)
        self._fsync(fd)
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):  # what this fsync made durable, by file
            with open(f"/proc/self/fd/{fd}", "rb") as f:  # its descriptor is write-only
                self.durable[st.st_ino] = f.read()

    def is_durable(self, payload: bytes) -> bool:
        return any(payload in data for data in list(self.durable.values()))

    @contextlib.contextmanager
    def installed(self):
        with mock.patch.object(os, "write", self.write), mock.patch.object(os, "writev", self.writev), \
                mock.patch.object(os, "fsync", self.fsync):
            yield self


def spooled(root: Path) -> list[bytes]:
    """Every frame in the spool after the orphan sweep, in the order the writer took them
    (segments by their sequence number); no segment torn or corrupt."""
    spool.recover_orphans(root)
    assert list((root / spool.NEW).iterdir()) == [], "a segment left in new/ after the sweep"
    frames = []
    for path in sorted(spool.sealed_segments(root), key=lambda p: int(p.stem.rsplit("-", 1)[1])):
        scan = segment.read(path)
        assert not scan.corrupt and scan.torn_tail is None and not scan.unreadable, (path.name, scan)
        frames += scan.frames
    return frames


def test_concurrent_commits_cost_one_write(tmp_path):
    calls = Syscalls()

    async def one(w, i):
        await w.commit(w.append(b"frame-%d" % i))

    async def go():
        w = spool.SegmentWriter(tmp_path, SpoolSettings())
        await asyncio.gather(*(one(w, i) for i in range(200)))
        return w

    with calls.installed():
        w = asyncio.run(go())
    assert w._synced == 200
    # The header is the only os.write; the 200 frames, all taken before the first sync pass, one writev.
    assert (calls.writes, calls.writevs) == (1, 1)
    w.close_sync()
    assert spooled(tmp_path) == [b"frame-%d" % i for i in range(200)]


def test_os_durability_writes_each_frame_at_once(tmp_path):
    calls = Syscalls()
    with calls.installed():
        w = spool.SegmentWriter(tmp_path, SpoolSettings(durability="os"))
        for i in range(5):
            w.append(b"f%d" % i)
            assert calls.writes == 1 + i + 1  # the header, then one write per frame, before any commit
    assert calls.writevs == 0
    w.close_sync()
    assert spooled(tmp_path) == [b"f%d" % i for i in range(5)]


def test_a_failed_group_write_fails_its_frames_only(tmp_path):
    calls = Syscalls(bad_writes={1}, torn=True)
    outcome = {}

    async def one(w, p):
        try:
            await w.commit(w.append(p))
        except OSError as exc:
            outcome[p] = exc.errno
        else:
            outcome[p] = "acked"

    async def go():
        w = spool.SegmentWriter(tmp_path, SpoolSettings())
        await one(w, b"a")
        await asyncio.gather(*(one(w, b"b%d" % i) for i in range(3)))  # the torn group write
        await one(w, b"c")
        assert w.failure is None  # the next write that held cleared it
        return w

    with calls.installed():
        w = asyncio.run(go())
        w.close_sync()
    assert outcome == {b"a": "acked", b"b0": errno.ENOSPC, b"b1": errno.ENOSPC, b"b2": errno.ENOSPC, b"c": "acked"}
    assert w.write_failures == 3  # one per refused request, as before
    assert spooled(tmp_path) == [b"a", b"c"]  # the torn bytes were cut off; the segment went on
    assert w.budget.unwritten == 0


def test_frames_taken_during_a_failed_fsync_are_not_failed_with_it(tmp_path):
    # the failing fsync takes 1 s: 20 times the 0.05 s the test waits, so a loaded machine keeps the order
    calls = Syscalls(bad_fsyncs={2}, fsync_secs=1.0)  # 0, 1: a's segment and the folder
    outcome = {}

    async def one(w, p):
        try:
            await w.commit(w.append(p))
            outcome[p] = "acked"
        except OSError as exc:
            outcome[p] = exc.errno

    async def go():
        w = spool.SegmentWriter(tmp_path, SpoolSettings())
        await one(w, b"a")
        first = asyncio.create_task(one(w, b"b"))
        await asyncio.sleep(0.05)  # b's pass has started: written, its fsync (the failing one) in the thread
        assert w._written == 1 + 1 and w._synced == 1
        later = asyncio.create_task(one(w, b"c"))
        await asyncio.gather(first, later)
        await w.seal()

    with calls.installed():
        asyncio.run(go())
    assert outcome == {b"a": "acked", b"b": errno.EIO, b"c": "acked"}, outcome
    assert calls.writevs == 3  # c was in a pass of its own, after b's
    assert spooled(tmp_path) == [b"a", b"c"]


def test_close_sync_writes_buffered_frames_before_the_trailer(tmp_path):
    w = spool.SegmentWriter(tmp_path, SpoolSettings())
    tickets = [w.append(b"x%d" % i) for i in range(4)]  # taken, never committed: buffered
    assert len(tickets) == 4
    w.close_sync()
    [path] = spool.sealed_segments(tmp_path)
    scan = segment.read(path)
    assert (scan.frames, scan.sealed) == ([b"x0", b"x1", b"x2", b"x3"], "clean")
    assert w.budget.unwritten == 0


step = st.one_of(
    st.tuples(st.just("burst"), st.integers(1, 12)),  # concurrent append + commit
    st.tuples(st.just("burst_and_seal"), st.integers(1, 12)),  # a seal among them
    st.tuples(st.just("staggered"), st.integers(1, 12)),  # taken while earlier frames' passes run
    st.tuples(st.just("seal"), st.just(0)),
    st.tuples(st.just("take"), st.integers(1, 4)),  # appended, committed only by a later step's pass
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=10), bad_writes=st.sets(st.integers(0, 25), max_size=6),
       bad_fsyncs=st.sets(st.integers(0, 40), max_size=6), torn=st.booleans(),
       max_segment_bytes=st.sampled_from([120, 400, 1 << 20]), end=st.sampled_from(["seal", "close_sync"]))
def test_whatever_fails_acknowledged_frames_are_spooled_once_in_order(tmp_path_factory, steps, bad_writes, bad_fsyncs,
                                                                      torn, max_segment_bytes, end):
    root = tmp_path_factory.mktemp("spool")
    calls = Syscalls(bad_writes, bad_fsyncs, torn)
    early: list[bytes] = []  # acknowledged before an fsync covered them
    taken: list[bytes] = []  # in the order append returned
    tickets: dict[bytes, int] = {}
    acked: set[bytes] = set()
    raised: set[bytes] = set()
    uncommitted: list[bytes] = []
    w = spool.SegmentWriter(root, SpoolSettings(max_segment_bytes=max_segment_bytes))

    def take(p: bytes) -> int | None:
        try:
            t = w.append(p)
        except OSError:
            return None
        taken.append(p)
        tickets[p] = t
        return t

    async def one(p: bytes, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        t = take(p)
        if t is None:
            return
        try:
            await w.commit(t)
        except OSError:
            raised.add(p)
        else:
            acked.add(p)
            if not calls.is_durable(p):
                early.append(p)

    async def go():
        n = 0
        for kind, count in steps:
            names = [b"frame-%04d" % (n + i) for i in range(count)]
            n += count
            if kind == "burst":
                await asyncio.gather(*(one(p) for p in names))
            elif kind == "staggered":
                await asyncio.gather(*(one(p, 0.0003 * i) for i, p in enumerate(names)))
            elif kind == "burst_and_seal":
                half = len(names) // 2
                await asyncio.gather(*(one(p) for p in names[:half]), w.seal(), *(one(p) for p in names[half:]))
            elif kind == "seal":
                await w.seal()
            else:
                uncommitted.extend(p for p in names if take(p) is not None)
        if end == "seal":
            await asyncio.gather(*(one(b"last-%d" % i) for i in range(3)))
            await w.seal()

    with calls.installed():
        asyncio.run(go())
        w.close_sync()
    frames = spooled(root)

    assert early == [], "acknowledged before an fsync covered them"
    assert len(frames) == len(set(frames)), "a frame is in the spool twice"
    assert frames == [p for p in taken if p in set(frames)], "frames out of the order they were taken in"
    assert acked <= set(frames), f"acknowledged but not spooled: {sorted(acked - set(frames))}"
    assert not raised & set(frames), f"commit raised, yet spooled: {sorted(raised & set(frames))}"
    for p in uncommitted:  # never committed: in the spool unless the writer recorded it lost
        assert (p in frames) == (w._lost_error(tickets[p]) is None), p
    assert acked | raised | set(uncommitted) == set(taken)
    assert w.budget.unwritten == 0 and w._current is None and w._retiring == []


def test_a_loop_stopped_mid_pass_leaves_the_writer_as_its_files_are(tmp_path):
    calls = Syscalls(slow_fsync_secs=1.0)  # 20 times the 0.05 s the test waits: still in its fsync when stopped
    w = spool.SegmentWriter(tmp_path, SpoolSettings(max_segment_bytes=150))

    async def go():
        asyncio.create_task(w.commit(w.append(b"y" * 100)))  # retired by size: frame and trailer in one pass
        await asyncio.sleep(0.05)  # the pass is in its fsync; asyncio.run now cancels it

    with calls.installed():
        asyncio.run(go())
        w.close_sync()
    [path] = spool.sealed_segments(tmp_path)
    scan = segment.read(path)
    assert (scan.frames, scan.sealed, scan.corrupt) == ([b"y" * 100], "clean", False)
    assert path.stat().st_size == segment.HEADER.size + segment.FRAME.size + 100 + segment.TRAILER_SIZE  # one trailer
    assert w.budget.unwritten == 0
