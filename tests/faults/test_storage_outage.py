"""The lake's S3 fails for a while during delivery: refused connections, 500s, then a hang.

Storage is moto's S3 server behind ``FaultProxy``, so the collector's real S3 client (boto3)
meets real refused sockets, real 500 answers and a server that never answers. Throughout,
the collector keeps acknowledging (the spool absorbs the outage), ``/metrics`` shows the
failed attempts and the growing lag, nothing is parked (an outage is retried for ever), and
once S3 is back every acknowledged event is in the lake exactly once, without an operator.
"""

from __future__ import annotations

import collections
import io
import time

import pyarrow.parquet as pq
import pytest
from fault_checks import Metrics, assert_exactly_once, assert_recovered, wait_until
from loadgen import Load
from fault_proxy import FaultProxy
from support import moto_s3

pytestmark = pytest.mark.slow

BUCKET = "fault-lake"
OUTAGE_SECS = 4.0  # of each kind


def s3_lake_ids(storage) -> collections.Counter[str]:
    ids: collections.Counter[str] = collections.Counter()
    for key in storage.list("raw/"):
        ids.update(pq.read_table(io.BytesIO(storage.get(key)), columns=["event_id"]).column("event_id").to_pylist())
    return ids


def test_an_s3_outage_delays_delivery_and_loses_nothing(up, tmp_path):
    boto3 = pytest.importorskip("boto3")
    with moto_s3() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                     aws_secret_access_key="test").create_bucket(Bucket=BUCKET)
        host, port = endpoint.removeprefix("http://").split(":")
        proxy = FaultProxy((host, int(port)))
        storage = {"type": "s3", "bucket": BUCKET, "prefix": "lake", "endpoint_url": proxy.url,
                   "access_key_id": "test", "secret_access_key": "test", "timeout_secs": 1.5}
        collector = up(storage=storage, delivery={"max_retry_secs": 1.0})
        load = Load(collector.url, collector.write_key, connections=6).start()
        try:
            load.wait_acked(1000)
            wait_until(lambda: Metrics(collector.url)("beaconlake_events_delivered_total") > 0, 20,
                       "delivery to S3 before the outage")
            for mode in ("error500", "refuse", "stall"):
                failures = Metrics(collector.url)("beaconlake_delivery_failures_total")
                proxy.mode = mode
                started = time.monotonic()
                # a hung request counts once the client's timeout (storage.timeout_secs) ends it
                wait_until(lambda: Metrics(collector.url)("beaconlake_delivery_failures_total") > failures, 15,
                           f"beaconlake_delivery_failures_total counting the {mode} outage")
                time.sleep(max(0.0, OUTAGE_SECS - (time.monotonic() - started)))
                assert proxy.seen[mode] > 0 or mode == "refuse", f"no request met the {mode} outage"
                lag = Metrics(collector.url)("beaconlake_delivery_lag_seconds")
                assert lag >= OUTAGE_SECS / 2, f"{mode}: /metrics says the delivery lag is {lag}s during the outage"
                load.wait_acked(200, timeout=10)  # still acknowledging: the outage is the spool's to absorb
                proxy.mode = "pass"
                healed = time.monotonic()
                assert_recovered(collector.url, collector.write_key, timeout=30)
                print(f"{mode}: {time.monotonic() - started:.1f}s outage, delivering again "
                      f"{time.monotonic() - healed:.1f}s after S3 came back")
            assert Metrics(collector.url)("beaconlake_delivery_failures_total") > 0
        finally:
            load.stop()
        assert not load.unexpected(), f"{load.unexpected()} {load.errors_5xx}"
        m = Metrics(collector.url)
        assert m("beaconlake_segments_parked_total") == 0 and m("beaconlake_spool_parked_segments") == 0
        collector.stop()
        assert not list((collector.data_dir / "spool").rglob("*.seg")), "segments left in the spool"

        from beaconlake import config
        from beaconlake.backends.storage import open_storage

        settings = config.load(collector.config_path)
        settings.storage.endpoint_url = endpoint  # read the lake straight from S3
        found = s3_lake_ids(open_storage(settings.storage))
        ours = collections.Counter({i: n for i, n in found.items() if load.ledger.number(i) is not None})
        assert_exactly_once(load.ledger.acked_ids(), ours, ledger=load.ledger, where="the S3 lake")
        proxy.close()
