"""The guarantee, tested the hard way: kill -9 the collector under load, restart it, and
every event that got a 2xx is in the lake exactly once."""

import asyncio
import collections
import time
import uuid

import httpx
import msgspec
import pytest

from support import read_lake, start_collector

pytestmark = pytest.mark.slow


async def load(url: str, key: str, seconds: float, connections: int = 16) -> tuple[set[str], int]:
    """Send 10-event batches from ``connections`` loops; return the acknowledged event ids."""
    acked: set[str] = set()
    failures = 0
    deadline = time.monotonic() + seconds

    async def loop(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while time.monotonic() < deadline:
            ids = [str(uuid.uuid4()) for _ in range(10)]
            events = [
                {"event_id": i, "level": "mid", "name": "page_view", "anonymous_id": "crash-test",
                 "client_ts": int(time.time() * 1000), "url": "https://shop.example/p/1", "props": {"n": n}}
                for n, i in enumerate(ids)
            ]
            body = msgspec.json.encode({"sent_at": int(time.time() * 1000), "events": events})
            try:
                r = await client.post(f"{url}/v1/events?k={key}", content=body, headers={"content-type": "text/plain"})
            except httpx.HTTPError:
                failures += 1
                await asyncio.sleep(0.01)
                continue
            if r.status_code == 200:
                acked.update(ids)
            else:
                failures += 1

    async with httpx.AsyncClient(timeout=5, limits=httpx.Limits(max_connections=connections)) as client:
        await asyncio.gather(*(loop(client) for _ in range(connections)))
    return acked, failures


def kill_during(collector, seconds: float, kill_after: float) -> set[str]:
    async def go():
        task = asyncio.create_task(load(collector.url, collector.write_key, seconds))
        await asyncio.sleep(kill_after)
        collector.kill()
        return await task

    acked, _ = asyncio.run(go())
    return acked


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path, workers):
    collector = start_collector(tmp_path, args=["--workers", str(workers)], config_overrides={"spool": {"flush_interval_secs": 0.5}})
    try:
        acked = kill_during(collector, seconds=3.0, kill_after=1.5)
        assert len(acked) > 500, f"the load generator got too few acknowledgements to prove anything: {len(acked)}"
        spooled = list((collector.data_dir / "spool").rglob("*.seg"))
        assert spooled, "the kill should have left undelivered segments behind"

        collector.start()  # recovers the orphaned segments and delivers them
        more, _ = asyncio.run(load(collector.url, collector.write_key, seconds=0.5, connections=4))
        collector.stop()  # clean shutdown delivers what is left
        collector.wait_delivered(timeout=5)
    finally:
        collector.kill()

    rows = read_lake(collector.data_dir)
    counts = collections.Counter(r["event_id"] for r in rows)
    missing = (acked | more) - counts.keys()
    assert not missing, f"{len(missing)} acknowledged events are not in the lake"
    duplicated = [i for i, n in counts.items() if n > 1]
    assert not duplicated, f"{len(duplicated)} events are in the lake more than once"
