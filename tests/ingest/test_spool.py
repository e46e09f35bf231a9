import asyncio
import errno
import os
import shutil

import pytest

from beaconlake.config import SpoolSettings
from beaconlake.ingest import spool
from beaconlake.lake import segment


def settings(**kw) -> SpoolSettings:
    return SpoolSettings(**kw)


def run(coro):
    return asyncio.run(coro)


def test_frames_round_trip_and_seal(tmp_path):
    async def go():
        w = spool.SegmentWriter(tmp_path, settings())
        tickets = [w.append(f"payload-{i}".encode()) for i in range(5)]
        await asyncio.gather(*(w.commit(t) for t in tickets))
        assert spool.sealed_segments(tmp_path) == []  # still open
        await w.seal()
        return w

    run(go())
    [seg] = spool.sealed_segments(tmp_path)
    assert [p.decode() for p in spool.read_frames(seg)] == [f"payload-{i}" for i in range(5)]
    assert list((tmp_path / "new").iterdir()) == []


def test_concurrent_commits_share_fsyncs(tmp_path, monkeypatch):
    calls = []
    real = os.fsync

    def counting_fsync(fd):
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(spool.os, "fsync", counting_fsync)

    async def writer(w, i):
        await w.commit(w.append(b"x" * 100))

    async def go():
        w = spool.SegmentWriter(tmp_path, settings())
        await asyncio.gather(*(writer(w, i) for i in range(200)))
        return w

    w = run(go())
    assert w._synced == 200
    # Group commit: far fewer fsyncs than requests (one per sync pass, not per request).
    assert 1 <= len(calls) < 50, len(calls)


def test_commit_returns_only_after_fsync(tmp_path, monkeypatch):
    order = []
    real = os.fsync
    monkeypatch.setattr(spool.os, "fsync", lambda fd: (order.append("fsync"), real(fd)))

    async def go():
        w = spool.SegmentWriter(tmp_path, settings())
        await w.commit(w.append(b"a"))
        order.append("acked")

    run(go())
    assert order.index("fsync") < order.index("acked")


def test_os_durability_skips_fsync(tmp_path, monkeypatch):
    monkeypatch.setattr(spool.os, "fsync", lambda fd: pytest.fail("fsync called with durability=os"))

    async def go():
        w = spool.SegmentWriter(tmp_path, settings(durability="os"))
        await w.commit(w.append(b"a"))
        await w.seal()

    run(go())
    assert len(spool.sealed_segments(tmp_path)) == 1


def test_segments_rotate_by_size(tmp_path):
    async def go():
        w = spool.SegmentWriter(tmp_path, settings(max_segment_bytes=1000))
        for _ in range(25):
            await w.commit(w.append(b"y" * 100))
        await w.seal()

    run(go())
    segs = spool.sealed_segments(tmp_path)
    assert len(segs) >= 3
    assert sum(len(list(spool.read_frames(s))) for s in segs) == 25
    frame = segment.FRAME.size + 100
    assert all(s.stat().st_size <= 1000 + frame + segment.TRAILER_SIZE for s in segs)


def test_segments_seal_by_age(tmp_path):
    async def go():
        w = spool.SegmentWriter(tmp_path, settings(flush_interval_secs=0.05))
        await w.commit(w.append(b"z"))
        await w.seal_if_due()
        assert spool.sealed_segments(tmp_path) == []
        await asyncio.sleep(0.06)
        await w.seal_if_due()

    run(go())
    assert len(spool.sealed_segments(tmp_path)) == 1


def test_two_writers_never_share_a_segment(tmp_path):
    async def go():
        a = spool.SegmentWriter(tmp_path, settings())
        b = spool.SegmentWriter(tmp_path, settings())
        await asyncio.gather(a.commit(a.append(b"from-a")), b.commit(b.append(b"from-b")))
        await a.seal()
        await b.seal()

    run(go())
    segs = spool.sealed_segments(tmp_path)
    assert len(segs) == 2
    assert sorted(next(spool.read_frames(s)) for s in segs) == [b"from-a", b"from-b"]


def test_a_live_writers_segment_is_never_sealed_under_it(tmp_path):
    async def go():
        w = spool.SegmentWriter(tmp_path, settings())
        await w.commit(w.append(b"first"))
        assert spool.recover_orphans(tmp_path) == []  # its writer holds the flock
        await w.commit(w.append(b"second"))
        await w.seal()

    run(go())
    [seg] = spool.sealed_segments(tmp_path)
    scan = segment.read(seg)
    assert (scan.frames, scan.sealed, scan.corrupt) == ([b"first", b"second"], "clean", False)


def test_the_segment_of_a_dead_writer_is_sealed_torn_tail_and_all(tmp_path):
    # What a writer that died mid-write leaves: header, whole frames, a torn frame, no lock.
    new_dir, _ = spool.spool_dirs(tmp_path)
    salt = b"12345678"
    seed = segment.seed_of(salt)
    data = segment.header(salt) + segment.frame(seed, b"a") + segment.frame(seed, b"b") + segment.frame(seed, b"c")[:10]
    (new_dir / "1764201600000-999-abcdef-000001.seg").write_bytes(data)
    [moved] = spool.recover_orphans(tmp_path)
    scan = segment.read(moved)
    assert scan.frames == [b"a", b"b"]
    assert (scan.sealed, scan.corrupt, scan.torn_tail) == ("recovered", False, (len(data) - 10, len(data)))
    assert list(new_dir.iterdir()) == []


def test_files_that_hold_no_frame_are_removed_quietly_at_recovery(tmp_path, caplog):
    new_dir, _ = spool.spool_dirs(tmp_path)
    (new_dir / "1764201600000-1-aaaaaa-000001.seg").write_bytes(b"")  # the old disk-full leftovers
    (new_dir / "1764201600000-1-aaaaaa-000002.seg").write_bytes(segment.header(b"12345678"))
    stale = new_dir / "1764201600000-1-aaaaaa-000003.open"
    stale.write_bytes(b"BLSP")
    os.utime(stale, (0, 0))  # a writer died between creating and naming it, long ago
    assert spool.recover_orphans(tmp_path) == []
    assert list(new_dir.iterdir()) == []
    assert spool.sealed_segments(tmp_path) == []
    assert "ERROR" not in caplog.text and "WARNING" not in caplog.text


def test_a_segment_that_holds_no_frame_is_removed_not_sealed(tmp_path):
    async def go():
        w = spool.SegmentWriter(tmp_path, settings(flush_interval_secs=0.01))
        assert w.unwritable_reason() is None
        w.failure = "probe"  # what a failed write leaves: the next check opens a segment to probe
        assert w.unwritable_reason() is None
        assert len(list((tmp_path / "new").glob("*.seg"))) == 1
        await asyncio.sleep(0.02)
        await w.seal_if_due()

    run(go())
    assert spool.sealed_segments(tmp_path) == []
    assert list((tmp_path / "new").iterdir()) == []


def test_a_write_over_the_budget_is_refused_before_it_is_made(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    w = spool.SegmentWriter(tmp_path, settings(min_free_disk_bytes=free - 3 * 1024 * 1024, max_segment_bytes=1024 * 1024))
    # budget: free - floor - reserve (2 x max_segment_bytes) = about 1 MiB, give or take what others write
    with pytest.raises(spool.SpoolFull) as err:
        for _ in range(20000):
            w.append(b"z" * 4096)
    assert err.value.errno == errno.ENOSPC
    assert "bytes free" in err.value.strerror and f"spool.min_free_disk_bytes={free - 3 * 1024 * 1024}" in err.value.strerror
    assert "reserve of 2097152 bytes" in err.value.strerror
    assert w.failure is not None and w.unwritable_reason(64 * 1024) is not None
    w.close_sync()


def test_undelivered_bytes_counts_new_and_sealed(tmp_path):
    async def go():
        w = spool.SegmentWriter(tmp_path, settings())
        await w.commit(w.append(b"a" * 1000))
        await w.seal()
        await w.commit(w.append(b"b" * 500))

    run(go())
    frames = 2 * segment.FRAME.size + 1500
    assert spool.undelivered_bytes(tmp_path) == 2 * segment.HEADER.size + frames + segment.TRAILER_SIZE
