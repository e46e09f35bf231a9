"""Disk full, for real: the spool on a small tmpfs, filled up, then freed.

Checks what a full disk must never do: leak descriptors, leave files that hold no frame, take
the disk under the floor (so that delivery, which is what frees space, could not write), or
keep the collector refusing once space is back. And that every acknowledged frame is delivered.
"""

import asyncio
import collections
import contextlib
import errno
import os
import secrets
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import msgspec
import pyarrow.dataset as ds
import pytest

from beaconlake import config
from beaconlake.ingest import spool
from beaconlake.ingest.deliver import Deliverer
from beaconlake.lake import segment
from beaconlake.types import SpoolRecord, UserAgent
from support import read_lake, start_collector

MiB = 1024 * 1024


@contextlib.contextmanager
def tmpfs(path: Path, size: str, inodes: int | None = None):
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"a disk-full test needs a small filesystem of its own, and mount -t tmpfs was refused: "
                    f"{out.stderr.strip() or out.returncode} (run as root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path, leave: int = 0) -> Path:
    """A file that takes the filesystem's free space, all of it or all but ``leave`` bytes."""
    filler = path / "filler"
    with open(filler, "wb") as f:
        while True:
            room = shutil.disk_usage(path).free - leave
            if room <= 0:
                break
            try:
                f.write(b"\0" * min(room, MiB))
                f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    return filler


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def no_frame_files(spool_root: Path) -> list[str]:
    return [p.name for p in spool_root.glob("*/*") if p.is_file() and p.stat().st_size <= segment.HEADER.size]


def record(event_id: str) -> bytes:
    now = int(time.time() * 1000)
    body = msgspec.json.encode({"sent_at": now, "events": [{"event_id": event_id, "level": "mid", "name": "page_view",
                                                            "anonymous_id": "disk", "client_ts": now,
                                                            "props": {"pad": secrets.token_hex(2048)}}]})
    return msgspec.msgpack.encode(SpoolRecord("t1", now, now, None, None, UserAgent(), body, None, []))


def test_a_full_disk_costs_no_descriptor_no_empty_file_and_no_acknowledged_frame(tmp_path):
    with tmpfs(tmp_path / "disk", "4m") as disk:
        s = config.parse({"data_dir": str(disk), "tenants": [{"id": "t1", "write_key": "wk_aaaaaaaaaaaaaaaaaaaa",
                          "read_key": "rk_aaaaaaaaaaaaaaaaaaaa"}], "realtime": {"enabled": False},
                          "storage": {"type": "local", "root": str(tmp_path / "lake")},  # the lake off the small disk
                          "spool": {"min_free_disk_bytes": 0, "max_segment_bytes": 256 * 1024}}, tmp_path, environ={})
        writer = spool.SegmentWriter(s.spool_path, s.spool)
        acked: list[str] = []

        async def write(n: int) -> list[OSError]:
            errors = []
            for _ in range(n):
                event_id = str(uuid.uuid4())
                try:
                    await writer.commit(writer.append(record(event_id)))
                except OSError as exc:
                    errors.append(exc)
                else:
                    acked.append(event_id)
            return errors

        # 1. the budget: refused before the disk is full, with the floor and the reserve named
        errors = asyncio.run(write(1000))
        assert errors and all(isinstance(e, spool.SpoolFull) and e.errno == errno.ENOSPC for e in errors)
        assert "reserve of 524288 bytes" in errors[0].strerror
        assert shutil.disk_usage(disk).free >= 2 * 256 * 1024 - 64 * 1024  # the deliverer's reserve is there
        fds = open_fds()

        # 2. the disk itself refuses: filled behind the budget's back (another process would)
        writer.budget.refresh_secs = 3600  # so the budget does not see it coming; the write does
        filler = fill(disk)
        after_round = []
        for _ in range(3):
            errors = asyncio.run(write(200))
            assert len(errors) == 200 and all(e.errno == errno.ENOSPC for e in errors), errors[:3]
            asyncio.run(writer.seal())  # and with no segment open: the next write has to create one
            after_round.append(open_fds())
        assert after_round[0] == after_round[-1] <= fds, f"descriptors leaked by refused writes: {fds} -> {after_round}"
        assert no_frame_files(s.spool_path) == []
        assert writer.unwritable_reason() is not None

        # 3. space is back (the filler gone, the sealed segments delivered): writes are taken
        # again, without a restart
        filler.unlink()
        Deliverer(s).run_once()
        writer.budget.refresh_secs = 0.05
        assert writer.unwritable_reason() is None
        assert asyncio.run(write(50)) == []
        writer.close_sync()
        assert open_fds() < fds

        # every acknowledged frame reaches the lake, once
        Deliverer(s).drain()
        assert spool.sealed_segments(s.spool_path) == [] and spool.parked_segments(s.spool_path) == []
    rows = ds.dataset(tmp_path / "lake" / "raw", format="parquet", partitioning="hive").to_table().to_pylist()
    counts = collections.Counter(r["event_id"] for r in rows)
    assert set(acked) == counts.keys() and max(counts.values()) == 1


def test_no_inode_left_to_create_a_segment_leaves_nothing_behind(tmp_path):
    with tmpfs(tmp_path / "disk", "8m", inodes=16) as disk:
        settings = config.SpoolSettings(min_free_disk_bytes=0, max_segment_bytes=256 * 1024)
        writer = spool.SegmentWriter(disk / "spool", settings)
        n = 0
        with contextlib.suppress(OSError):
            while True:  # use up the inodes
                (disk / f"f{n}").touch()
                n += 1
        fds = open_fds()
        for _ in range(100):
            with pytest.raises(OSError) as err:
                writer.append(b"x" * 100)
            assert err.value.errno == errno.ENOSPC
        assert open_fds() == fds
        assert list((disk / "spool" / "new").iterdir()) == []
        assert writer.failure and "No space left on device" in writer.failure
        (disk / "f0").unlink()
        assert writer.unwritable_reason() is None  # the probe opened a segment: it can write again
        writer.append(b"x" * 100)
        writer.close_sync()
        assert len(spool.sealed_segments(disk / "spool")) == 1


# -- the collector, end to end ----------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def fd_count(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{pid}/fd"))
    return total


async def post(client: httpx.AsyncClient, url: str, key: str, acked: set[str]) -> httpx.Response:
    ids = [str(uuid.uuid4()) for _ in range(10)]
    now = int(time.time() * 1000)
    events = [{"event_id": i, "level": "mid", "name": "page_view", "anonymous_id": "disk-full", "client_ts": now,
               "props": {"pad": secrets.token_hex(512)}} for i in ids]  # random: the lake cannot compress it away
    r = await client.post(f"{url}/v1/events?k={key}", content=msgspec.json.encode({"sent_at": now, "events": events}),
                          headers={"content-type": "text/plain"})
    if r.status_code == 200:
        acked.update(ids)
    return r


@pytest.mark.slow
def test_the_collector_sheds_on_a_full_disk_and_recovers_when_space_is_freed(tmp_path):
    floor = 4 * MiB
    with tmpfs(tmp_path / "disk", "48m") as disk:
        collector = start_collector(disk, config_overrides={
            "spool": {"min_free_disk_bytes": floor, "max_segment_bytes": MiB, "flush_interval_secs": 0.3},
            "realtime": {"enabled": False}, "schedule": {"enabled": False}})
        acked: set[str] = set()
        try:
            filler = fill(disk, leave=floor + 2 * MiB + 3 * MiB)  # the floor, the reserve, and 3 MiB to write

            async def until_full() -> httpx.Response:
                """Post until the refusals hold: delivery frees some spool space at first (the
                lake is smaller than the spool), until the lake itself fills the budget."""
                refused_in_a_row = 0
                async with httpx.AsyncClient(timeout=10) as client:
                    for _ in range(5000):
                        r = await post(client, collector.url, collector.write_key, acked)
                        assert shutil.disk_usage(disk).free >= floor, "the spool took the disk under its floor"
                        refused_in_a_row = refused_in_a_row + 1 if r.status_code == 503 else 0
                        if refused_in_a_row >= 30:
                            return r
                        if r.status_code == 503:
                            await asyncio.sleep(0.05)
                    raise AssertionError("the collector never stopped accepting on a full disk")

            refused = asyncio.run(until_full())
            assert refused.headers["retry-after"] and "disk" in refused.json()["error"], refused.json()
            ready = httpx.get(f"{collector.url}/readyz")
            assert ready.status_code == 503 and "spool.min_free_disk_bytes" in ready.json()["reason"], ready.json()
            pids = descendants(collector.proc.pid)
            fds = fd_count(pids)

            async def refused_many() -> collections.Counter:
                async with httpx.AsyncClient(timeout=10) as client:
                    return collections.Counter([(await post(client, collector.url, collector.write_key, acked)).status_code
                                                for _ in range(300)])

            codes = asyncio.run(refused_many())
            assert codes[503] == 300, codes
            assert fd_count(pids) <= fds + 5, "descriptors leaked while the disk was full"
            assert no_frame_files(collector.data_dir / "spool") == []

            filler.unlink()
            deadline = time.monotonic() + 10
            while httpx.get(f"{collector.url}/readyz").status_code != 200:
                assert time.monotonic() < deadline, "not ready again after space was freed"
                time.sleep(0.1)

            async def some_more() -> collections.Counter:
                async with httpx.AsyncClient(timeout=10) as client:
                    return collections.Counter([(await post(client, collector.url, collector.write_key, acked)).status_code
                                                for _ in range(50)])

            assert asyncio.run(some_more())[200] == 50
            collector.stop()
            collector.wait_delivered(timeout=20)
        finally:
            collector.kill()
        counts = collections.Counter(r["event_id"] for r in read_lake(collector.data_dir))
        missing = acked - counts.keys()
        assert not missing, f"{len(missing)} acknowledged events are not in the lake"
        assert max(counts.values()) == 1


@pytest.mark.slow
def test_a_worker_killed_while_another_program_fills_the_disk_is_replaced(tmp_path):
    """When a worker dies the supervisor writes its metrics snapshot; on a disk filled to the last
    byte by someone else, that write failed and ended ``beaconlake up`` itself, for good."""
    from faults.fault_procs import alive, kill9, wait_role

    with tmpfs(tmp_path / "disk", "48m") as disk:
        collector = start_collector(disk, args=["--workers", "2"], config_overrides={
            "spool": {"min_free_disk_bytes": MiB, "max_segment_bytes": MiB, "flush_interval_secs": 0.3},
            "realtime": {"enabled": False}, "schedule": {"enabled": False}})
        acked: set[str] = set()

        async def posts(n: int) -> collections.Counter:
            async with httpx.AsyncClient(timeout=10) as client:
                return collections.Counter([(await post(client, collector.url, collector.write_key, acked)).status_code
                                            for _ in range(n)])

        try:
            assert asyncio.run(posts(20))[200] == 20
            filler = fill(disk)
            first, second = wait_role(collector.proc.pid, "bl-worker", count=2)
            kill9(first)
            wait_role(collector.proc.pid, "bl-worker", count=2, exclude={first}, timeout=30)
            time.sleep(1.0)  # the supervisor's snapshot, and the new worker's start, on the full disk
            assert collector.proc.poll() is None and alive(second), "the collector did not survive the full disk"
            filler.unlink()
            deadline = time.monotonic() + 15
            while httpx.get(f"{collector.url}/readyz").status_code != 200:
                assert time.monotonic() < deadline, "not ready again after space was freed"
                time.sleep(0.1)
            assert asyncio.run(posts(20))[200] == 20
            collector.stop()
            collector.wait_delivered(timeout=20)
        finally:
            collector.kill()
        counts = collections.Counter(r["event_id"] for r in read_lake(collector.data_dir))
        assert acked <= counts.keys() and max(counts.values()) == 1
