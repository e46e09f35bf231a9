"""A writer killed with SIGKILL while others keep writing: its segment is sealed and delivered
promptly, and a live writer's segment is never touched."""

import asyncio
import collections
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import msgspec
import pytest

from beaconlake import config
from beaconlake.ingest import spool
from beaconlake.ingest.deliver import Deliverer
from beaconlake.lake import segment
from support import read_lake, start_collector

WRITER = r"""
import asyncio, signal, sys, time, uuid
from pathlib import Path
import msgspec
from beaconlake.config import SpoolSettings
from beaconlake.ingest import spool
from beaconlake.types import SpoolRecord, UserAgent

async def main():
    writer = spool.SegmentWriter(Path(sys.argv[1]), SpoolSettings(flush_interval_secs=3600))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        now = int(time.time() * 1000)
        event_id = str(uuid.uuid4())
        body = msgspec.json.encode({"sent_at": now, "events": [
            {"event_id": event_id, "level": "mid", "name": "page_view", "anonymous_id": sys.argv[2], "client_ts": now}]})
        record = SpoolRecord("t1", now, now, None, None, UserAgent(), body, None, [])
        await writer.commit(writer.append(msgspec.msgpack.encode(record)))
        print(event_id, flush=True)  # acknowledged: durable in the spool
        await asyncio.sleep(0.001)
    await writer.seal()

asyncio.run(main())
"""


class Writer:
    """A real writer process; ``acked`` collects the ids it acknowledged."""

    def __init__(self, root: Path, name: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root), name], stdout=subprocess.PIPE, text=True)
        self.acked: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.acked.append(line.strip())

    def wait_acked(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n:
            assert time.monotonic() < deadline, f"writer acknowledged only {len(self.acked)} of {n}"
            assert self.proc.poll() is None, f"writer exited with {self.proc.returncode}"
            time.sleep(0.01)

    def finish(self) -> None:
        self.proc.wait(30)
        self._reader.join(10)


def segment_of(root: Path, pid: int) -> list[Path]:
    return [p for p in root.glob("*/*.seg") if p.name.split("-")[1] == str(pid)]


def test_a_killed_writer_is_sealed_while_a_live_one_keeps_writing(tmp_path):
    s = config.parse({"tenants": [{"id": "t1", "write_key": "wk_aaaaaaaaaaaaaaaaaaaa", "read_key": "rk_aaaaaaaaaaaaaaaaaaaa"}],
                      "realtime": {"enabled": False}}, tmp_path, environ={})
    root = s.spool_path
    spool.spool_dirs(root)
    dead, live = Writer(root, "dead"), Writer(root, "live")
    try:
        dead.wait_acked(300)
        live.wait_acked(300)
        dead.proc.send_signal(signal.SIGKILL)
        dead.finish()
        [orphan] = segment_of(root, dead.proc.pid)
        [open_seg] = segment_of(root, live.proc.pid)
        assert orphan.parent.name == open_seg.parent.name == "new"

        deliverer = Deliverer(s)
        deliverer.run_once()
        assert segment_of(root, dead.proc.pid) == []  # sealed, delivered, deleted
        assert deliverer.metrics.value("beaconlake_spool_orphans_sealed_total") == 1
        assert open_seg.exists(), "the live writer's segment was taken from under it"
        before = len(live.acked)
        live.wait_acked(before + 200)  # and it goes on writing to it
        assert segment_of(root, live.proc.pid) == [open_seg]
    finally:
        live.proc.send_signal(signal.SIGTERM)
        live.finish()
        dead.proc.kill()
    [sealed] = segment_of(root, live.proc.pid)
    assert segment.read(sealed).sealed == "clean"  # sealed by its writer, not as an orphan
    deliverer.drain()
    rows = read_lake(s.data_path)
    counts = collections.Counter(r["event_id"] for r in rows)
    for writer in (dead, live):
        missing = set(writer.acked) - counts.keys()
        assert not missing, f"{len(missing)} acknowledged events of one writer are not in the lake"
    assert max(counts.values()) == 1
    assert {r["anonymous_id"] for r in rows} == {"dead", "live"}


async def post_loop(url: str, key: str, stop: threading.Event, acked: set[str], connections: int = 8) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        await asyncio.gather(*(_posts(client, url, key, stop, acked) for _ in range(connections)))


async def _posts(client: httpx.AsyncClient, url: str, key: str, stop: threading.Event, acked: set[str]) -> None:
    while not stop.is_set():
        ids = [str(uuid.uuid4()) for _ in range(10)]
        events = [{"event_id": i, "level": "mid", "name": "page_view", "anonymous_id": "orphan-test",
                   "client_ts": int(time.time() * 1000)} for i in ids]
        body = msgspec.json.encode({"sent_at": int(time.time() * 1000), "events": events})
        try:
            # a new connection each time, so requests spread over both workers
            r = await client.post(f"{url}/v1/events?k={key}", content=body,
                                  headers={"content-type": "text/plain", "connection": "close"})
        except httpx.HTTPError:
            await asyncio.sleep(0.01)
            continue
        if r.status_code == 200:
            acked.update(ids)


@pytest.mark.slow
def test_kill_9_of_one_collector_worker_delivers_its_events_without_a_restart(tmp_path):
    # The live worker seals every 0.3 s; the dead one never will: only the orphan sweep can
    # bring its segment to the lake before `up` restarts.
    collector = start_collector(tmp_path, args=["--workers", "2"], config_overrides={"spool": {"flush_interval_secs": 0.3}})
    acked: set[str] = set()
    stop = threading.Event()
    loader = threading.Thread(target=lambda: asyncio.run(post_loop(collector.url, collector.write_key, stop, acked)))
    loader.start()
    try:
        spool_root = collector.data_dir / "spool"
        deadline = time.monotonic() + 20
        pids: set[int] = set()
        while len(pids) < 2 and time.monotonic() < deadline:
            pids = {int(p.name.split("-")[1]) for p in (spool_root / "new").glob("*.seg") if "-detect-" not in p.name}
            time.sleep(0.05)
        assert len(pids) == 2, f"expected a segment from each of 2 workers, got {pids}"
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        acked_before_kill = set(acked)
        deadline = killed_at + 10
        while segment_of(spool_root, victim) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert segment_of(spool_root, victim) == [], "the dead worker's segment is still in the spool"
        # everything acknowledged before the kill reaches the lake while the collector keeps running
        while time.monotonic() < deadline:
            if acked_before_kill <= {r["event_id"] for r in read_lake(collector.data_dir)}:
                break
            time.sleep(0.2)
        missing = acked_before_kill - {r["event_id"] for r in read_lake(collector.data_dir)}
        assert not missing, f"{len(missing)} events acknowledged before the kill are not in the lake"
        assert httpx.get(f"{collector.url}/readyz").status_code == 200
    finally:
        stop.set()
        loader.join(10)
        collector.stop()
        collector.kill()
    counts = collections.Counter(r["event_id"] for r in read_lake(collector.data_dir))
    assert not acked - counts.keys()
    assert max(counts.values()) == 1
