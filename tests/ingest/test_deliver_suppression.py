"""Delivery drops the events of forgotten people (the suppression list) before the realtime
consumers and the lake see them, and keeps delivering when the list cannot be read again."""

from __future__ import annotations

import time

import msgspec
from support import read_lake

from beaconlake import config
from beaconlake.backends.storage import open_storage
from beaconlake.errors import StorageError
from beaconlake.ingest.deliver import Deliverer
from beaconlake.ingest.spool import write_sealed_segment
from beaconlake.lake import layout
from beaconlake.lake import privacy as records
from beaconlake.lake.privacy import Suppression, id_hasher
from beaconlake.types import SpoolRecord, UserAgent

TENANT = {"id": "shop", "write_key": "wk_shopshopshopshopshop", "read_key": "rk_shopshopshopshopshop"}


def _segment(settings, stem: str, people: list[tuple[str, str | None]]) -> None:
    now = int(time.time() * 1000)
    events = [{"level": "mid", "name": "page_view", "anonymous_id": a, **({"user_id": u} if u else {})} for a, u in people]
    body = msgspec.json.encode({"sent_at": now, "events": events})
    rec = SpoolRecord("shop", now, now, None, None, UserAgent(), body, None, [])
    write_sealed_segment(settings.spool_path, f"{now}-{stem}", [msgspec.msgpack.encode(rec)])


def test_suppressed_people_never_reach_the_lake(tmp_path, monkeypatch):
    settings = config.parse({"tenants": [TENANT], "privacy": {"suppression_refresh_secs": 0}}, tmp_path, environ={})
    storage = open_storage(settings.storage)
    hasher = id_hasher(storage, None)
    records.put(storage, layout.suppress_key("shop", "r1"),
                Suppression(request="r1", id_hashes=[hasher("gone-anon"), hasher("gone-user")],
                            until_ms=int(time.time() * 1000) + 60_000))
    records.put(storage, layout.suppress_key("shop", "r2"),  # expired: no longer applies
                Suppression(request="r2", id_hashes=[hasher("back-anon")], until_ms=int(time.time() * 1000) - 1))
    _segment(settings, "a", [("gone-anon", None), ("kept", None), ("other-browser", "gone-user"), ("back-anon", None)])
    d = Deliverer(settings)
    assert d.run_once() == 1
    assert sorted(r["anonymous_id"] for r in read_lake(settings.data_path)) == ["back-anon", "kept"]
    assert d.metrics.counters["beaconlake_events_suppressed_total"][""] == 2

    # the list cannot be read again: the last one read still applies, and delivery goes on
    def down(*args, **kwargs):
        raise StorageError("s3 is down")

    monkeypatch.setattr(d.suppression, "storage", type("Down", (), {"list": down})())
    _segment(settings, "b", [("gone-anon", None), ("kept-2", None)])
    assert d.run_once() == 1
    assert "gone-anon" not in {r["anonymous_id"] for r in read_lake(settings.data_path)}
    assert "kept-2" in {r["anonymous_id"] for r in read_lake(settings.data_path)}


def test_expired_entries_are_pruned_and_live_ones_kept(tmp_path):
    from beaconlake.privacy.requests import prune_suppressions

    settings = config.parse({"tenants": [TENANT]}, tmp_path, environ={})
    storage = open_storage(settings.storage)
    now = int(time.time() * 1000)
    for request, until in (("live", now + 1000), ("over", now - 1)):
        records.put(storage, layout.suppress_key("shop", request), Suppression(request=request, id_hashes=[], until_ms=until))
    assert prune_suppressions(storage, now) == 1
    assert storage.list(layout.SUPPRESS) == [layout.suppress_key("shop", "live")]
