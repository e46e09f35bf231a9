"""The realtime processes adapt to the counters backend by its capabilities, not its class: how
often a writer publishes, whether calls stay on the event loop, and how long the deliverer waits
before it closes a window that other processes may still be publishing partials of."""

from __future__ import annotations

import pytest

from beaconlake import config
from beaconlake.backends.storage.local import LocalStorage
from beaconlake.realtime.consumer import RealtimeConsumer
from beaconlake.realtime.worker import WorkerRealtime
from beaconlake.serve.api import ReadApi
from beaconlake.serve.auth import Keys
from beaconlake.telemetry import Metrics

LATENESS_MS = 120_000  # realtime.allowed_lateness_secs's default


@pytest.mark.parametrize(("counters", "flush_secs", "in_process", "margin_ms"), [
    # partials published every 0.25 s: a window waits two intervals and a second past its lateness
    ({"type": "memory", "partials_interval_secs": 0.25}, 0.25, True, 1500),
    ({"type": "memory", "partials_interval_secs": 3}, 3.0, True, 7000),
    # Redis shares every write at once: no wait; calls are network round trips, run in threads.
    # (Nothing here talks to Redis: opening the handle does not connect.)
    ({"type": "redis", "url": "redis://127.0.0.1:9/0"}, 5.0, False, 0),
])
def test_the_worker_and_the_deliverer_follow_the_counters_capabilities(tmp_path, counters, flush_secs, in_process,
                                                                       margin_ms):
    settings = config.parse({"data_dir": "data", "counters": counters}, tmp_path, environ={})
    worker = WorkerRealtime(settings, Metrics())
    consumer = RealtimeConsumer(settings, LocalStorage(tmp_path / "lake"), Metrics())
    try:
        assert worker.counters.capabilities.flush_interval_secs == flush_secs
        assert worker.flush_secs == flush_secs
        assert worker.stats.inline is in_process
        api = ReadApi(Keys(settings), worker.counters, worker.index)  # as serve/app.py composes it
        assert api.inline_counters is in_process
        assert consumer.closer.delay_ms == LATENESS_MS + margin_ms
    finally:
        worker.close()
        consumer.close()
    partials = list((tmp_path / "data" / "realtime" / "partials").glob("*.bin"))
    # memory partials live under the realtime state folder handed to the backend, one per process
    assert len(partials) == (2 if counters["type"] == "memory" else 0)
