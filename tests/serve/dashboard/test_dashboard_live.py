"""The Live view reads the raw lake through the storage seam: the same figures from a local
folder, from S3 (moto's server mode; it used to show nothing there) and from Azure Blob Storage
(Azurite), the lake delivery writes to each."""

from __future__ import annotations

import msgspec
import pytest
from support import AZURITE_ACCOUNT, AZURITE_KEY, azurite, moto_s3

from beaconlake import config
from beaconlake.backends.storage import open_storage
from beaconlake.serve.dashboard import live
from beaconlake.ingest import spool
from beaconlake.ingest.deliver import Deliverer
from beaconlake.types import Rejection, SpoolRecord, UserAgent
from beaconlake.units import now_ms

KEYS = {"write_key": "wk_livelivelivelivelive", "read_key": "rk_livelivelivelivelive"}


@pytest.fixture(params=["local", "s3", "azure"])
def storage_section(request, tmp_path):
    if request.param == "local":
        yield {}
        return
    if request.param == "azure":
        with azurite() as endpoint:
            section = {"type": "azure", "account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY,
                       "container": "lake", "endpoint_url": endpoint}
            open_storage(config.AzureStorageSettings(**{k: v for k, v in section.items() if k != "type"})
                         ).container.create_container()
            yield {"storage": section}
        return
    import boto3

    with moto_s3() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k",
                     aws_secret_access_key="s").create_bucket(Bucket="lake")
        # moto keeps buckets across its servers in one process: a prefix of this test's own
        yield {"storage": {"type": "s3", "bucket": "lake", "prefix": tmp_path.name, "endpoint_url": endpoint,
                           "access_key_id": "k", "secret_access_key": "s"}}


def deliver_now(s, records):
    payloads = [msgspec.msgpack.encode(r) for r in records]
    spool.write_sealed_segment(s.spool_path, f"{now_ms():013d}-live-000001", payloads)
    Deliverer(s).run_once()
    assert not spool.sealed_segments(s.spool_path)


def test_live_shows_the_last_hour_on_every_storage(tmp_path, storage_section):
    s = config.parse({"tenants": [{"id": "shop", **KEYS}, {"id": "blog", **{k: v.replace("live", "blog") for k, v in KEYS.items()}}],
                      "realtime": {"enabled": False}, **storage_section}, tmp_path, environ={})
    now = now_ms()

    def ev(name, anon, ago_ms, path="/", level="mid"):
        return {"level": level, "name": name, "anonymous_id": anon, "client_ts": now - ago_ms,
                "url": f"https://shop.example{path}"}

    events = [ev("page_view", "a", 120_000, "/p/1"), ev("page_view", "b", 60_000, "/p/1"), ev("page_view", "a", 30_000, "/cart"),
              ev("click", "a", 20_000, level="low"),
              ev("page_view", "old", 3 * 3_600_000, "/old")]  # delivered now, but hours old: outside the hour
    body = msgspec.json.encode({"sent_at": now, "events": events})
    shop = SpoolRecord("shop", now, now, "203.0.113.0", "ua", UserAgent(), body, None,
                       [Rejection(5, "invalid_event", "name: bad", "{}")])
    blog = SpoolRecord("blog", now, now, None, None, UserAgent(), msgspec.json.encode({"events": [ev("page_view", "z", 1000)]}),
                       None, [])
    deliver_now(s, [shop, blog])

    out = live.live(open_storage(s.storage), "shop", None)
    assert "note" not in out
    assert sum(m["events"] for m in out["minutes"]) == 4  # the old event and the other tenant's are not counted
    assert {(m["level"], m["events"]) for m in out["minutes"]} >= {("low", 1)}
    assert out["people_last_hour"] == 2 and out["active_people"] == 2
    assert out["pages"][0] == {"key": "/p/1", "views": 2, "people": 2}
    assert {r["key"]: r["events"] for r in out["names"]} == {"page_view": 3, "click": 1}
    assert out["rejected"] == [{"key": "invalid_event", "events": 1}]


def test_live_of_a_tenant_without_files_is_empty(tmp_path, storage_section):
    s = config.parse({"tenants": [{"id": "shop", **KEYS}], "realtime": {"enabled": False}, **storage_section},
                     tmp_path, environ={})
    out = live.live(open_storage(s.storage), "shop", None)
    assert out["minutes"] == [] and out["active_people"] == 0 and out["rejected"] == []
