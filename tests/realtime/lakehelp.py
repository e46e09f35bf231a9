"""Shared by the lake detector's tests: settings with sequences, raw files written the way lake
delivery writes them, and the reference detector (one stream, event-time order)."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import msgspec

from beaconlake import config
from beaconlake.backends.coordination.local import LocalCoordination
from beaconlake.backends.highlevel.sqlite import SqliteHighLevelIndex
from beaconlake.backends.storage import open_storage
from beaconlake.lake.parquet import file_bytes
from beaconlake.ingest.rows import segment_rows
from beaconlake.lake import layout
from beaconlake.realtime.sequences import Detector, Seen
from beaconlake.types import SpoolRecord, UserAgent

T0 = 1_764_460_800_000  # 2025-11-30T00:00:00Z
TENANT = "shop"
VIEWED_THEN_ADDED = {
    "name": "viewed_then_added", "within_secs": 60,
    "steps": [{"name": "product_view", "where": [{"field": "props.category", "op": "exists"}]},
              {"name": "product_view", "same": ["props.category"]},
              {"name": "add_to_cart", "where": [{"field": "props.price", "op": "gte", "value": 10}]}],
}
ABANDONED = {"name": "abandoned_cart", "within_secs": 30, "steps": [{"name": "add_to_cart"}],
             "not_followed_by": {"name": "checkout", "within_secs": 20}}
SEARCHED = {"name": "searched_then_viewed", "within_secs": 40,
            "steps": [{"name": "search"}, {"name": "product_view"}]}
DEFINITIONS = [VIEWED_THEN_ADDED, ABANDONED, SEARCHED]


def make_settings(tmp: Path, *, grace_secs: float = 5, lateness_secs: float = 30, storage: dict | None = None,
                  **realtime) -> config.Settings:
    tenant = {"id": TENANT, "write_key": "wk_" + "a" * 20, "read_key": "rk_" + "b" * 20, "sequences": DEFINITIONS}
    return config.parse({
        "data_dir": str(tmp / "data"), "tenants": [tenant], **({"storage": storage} if storage else {}),
        "realtime": {"sequences_from": "lake", "browser_grace_secs": grace_secs, "lake_lateness_secs": lateness_secs,
                     **realtime},
    }, tmp, environ={})


class Lake:
    """The real pieces a lake detector works with, on one machine: local storage, the local
    coordination backend, a SQLite high-level index."""

    def __init__(self, tmp: Path, **kw) -> None:
        self.settings = make_settings(tmp, **kw)
        self.storage = open_storage(self.settings.storage)
        self.coordination = LocalCoordination(self.settings.run_path, "node-a")
        self.index = SqliteHighLevelIndex(tmp / "highlevel.db")

    def close(self) -> None:
        self.index.close()


def event(anon: str, name: str, ts: int, level: str = "mid", **props) -> dict:
    return {"event_id": str(uuid.uuid4()), "level": level, "name": name, "anonymous_id": anon, "client_ts": ts,
            "props": props}


def write_raw(storage, segment: str, events: list[dict]) -> list[str]:
    """Deliver ``events`` as lake delivery does a spool segment named ``segment`` (one record,
    received when sent, so event_ts = client_ts); return the keys written."""
    if not events:
        return []
    sent = max(e["client_ts"] for e in events)
    body = msgspec.json.encode({"sent_at": sent, "events": events})
    payload = msgspec.msgpack.encode(SpoolRecord(TENANT, sent, sent, None, None, UserAgent(), body, None, []))
    raw, _ = segment_rows(segment, [payload], sent).tables()
    keys = []
    for (tenant, level, y, m, d), table in sorted(raw.items()):
        key = layout.raw_key(tenant, level, date(y, m, d), segment)
        storage.put(key, file_bytes(table, 3))
        keys.append(key)
    return keys


def seen(e: dict) -> Seen:
    return Seen(e["event_id"], e["level"], e["name"], e["anonymous_id"], None, None, e["client_ts"], None, None, None,
                e["props"])


def reference(settings: config.Settings, events: list[dict]) -> dict[str, tuple]:
    """One detector over ``events`` in one stream, in (event_ts, event_id) order, everything
    due at the end: match event_id -> (definition, anonymous id, matched ids, event_ts)."""
    rt = settings.realtime
    det = Detector(settings.tenants, int(rt.browser_grace_secs * 1000), rt.max_events_per_person, event_time=True)
    tenant = settings.tenants[0].id
    for e in sorted(events, key=lambda e: (e["client_ts"], e["event_id"])):
        det.feed(tenant, seen(e), e["client_ts"])
    return described(det.due(2**62))


def described(matches) -> dict[str, tuple]:
    return {m.event_id: (m.definition, m.anonymous_id, tuple(m.event_ids), m.event_ts) for m in matches}
