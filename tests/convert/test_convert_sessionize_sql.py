"""One batch's sessionization, statement by statement, on each engine.

The exact dedupe: ``slim`` flags the rows whose event id hash was seen twice, ``dropped`` names the
copies that lose (the order of ``DUP_ORDER``), and the windows (hence ``ev``) see each event once.
Events without a page view id take the latest page view before them in the same session."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from convert_engines import make_engine

from beaconlake.convert import sessionize
from beaconlake.convert.sessionize import Bounds
from beaconlake.types import RAW_SCHEMA

DAY = 86_400_000
T0 = 20_000 * DAY  # a day's midnight


def _row(event_id: str, received_at: int, segment: str, props: str | None = "{}", url: str | None = "https://a/",
         event_ts: int = T0 + 3_600_000, title: str = "", anonymous_id: str = "a1", name: str = "page_view",
         context: str = "{}") -> dict:
    return {
        "event_id": event_id, "tenant": "shop", "level": "mid", "name": name, "anonymous_id": anonymous_id,
        "user_id": None, "session_id": "cs", "client_ts": event_ts, "sent_at": event_ts, "received_at": received_at,
        "event_ts": event_ts, "url": url, "referrer": None, "title": title, "props": props, "context": context,
        "ip": None, "user_agent": None, "ua_browser": None, "ua_browser_version": None, "ua_os": None,
        "ua_os_version": None, "ua_device": None, "is_bot": False, "segment": segment,
    }


def test_duplicate_copies_are_dropped_in_dup_order(engine_kind, tmp_path, scratch):
    t = T0 + 3_600_000
    rows = [
        _row("by-received", t + 900, "seg-1", title="late"), _row("by-received", t + 100, "seg-2", title="first"),
        _row("by-segment", t + 100, "seg-2", title="seg-2"), _row("by-segment", t + 100, "seg-1", title="seg-1"),
        _row("by-props", t + 100, "seg-1", props="{}", title="props"),
        _row("by-props", t + 100, "seg-1", props=None, title="null props"),
        _row("three", t + 300, "seg-3", title="c"), _row("three", t + 200, "seg-3", title="b"),
        _row("three", t + 100, "seg-3", title="a"),
        _row("single", t + 100, "seg-1", title="only"),
    ]
    path = tmp_path / "raw.parquet"
    pq.write_table(pa.Table.from_pylist(rows, RAW_SCHEMA), path)
    b = Bounds("shop", T0, T0 + DAY, T0 - DAY, T0 + 2 * DAY, 30 * 60_000, 24 * 3_600_000)
    e = make_engine(engine_kind, tmp_path / "data", scratch)
    try:
        e.read_parquet("raw", [str(path)], RAW_SCHEMA, key_offset=0)
        e.materialize("batch_anons", sessionize.batch_anons_sql(b))
        e.materialize("dups", sessionize.dups_sql(b, e.dialect))
        assert e.materialize("slim", sessionize.slim_sql(b, e.dialect)) == len(rows)
        assert e.materialize("dropped", sessionize.dropped_sql(b, e.dialect)) == 5
        e.materialize("win", sessionize.windows_sql(b, e.dialect))
        kept = e.query("SELECT r.event_id, r.title FROM raw r JOIN win w ON w._row_key = r._row_key").to_pylist()
        flagged = e.query("SELECT count_if(maybe_dup) AS n FROM slim").column(0)[0].as_py()
    finally:
        e.close()
    assert flagged == 9
    assert sorted((k["event_id"], k["title"]) for k in kept) == [
        ("by-props", "null props"), ("by-received", "first"), ("by-segment", "seg-1"), ("single", "only"), ("three", "a"),
    ]


def test_events_without_a_page_view_id_take_the_latest_page_view_of_their_session(engine_kind, tmp_path, scratch):
    t, minute = T0 + 3_600_000, 60_000

    def ev(event_id: str, anon: str, at: int, name: str, pv: str | None = None) -> dict:
        context = json.dumps({"page_view_id": pv} if pv else {})
        return _row(event_id, t + at, "seg-1", event_ts=t + at, anonymous_id=anon, name=name, context=context)

    rows = [
        ev("s1", "srv", 0, "page_view", "pv-1"), ev("s2", "srv", minute, "click"),
        ev("s3", "srv", 2 * minute, "page_view"), ev("s4", "srv", 3 * minute, "link_click"),
        ev("s5", "srv", 50 * minute, "click"),  # a new session: no page view of its own
        ev("s6", "srv", 51 * minute, "search"),  # not a page event
        ev("n1", "none", 0, "click"),  # never a page view
        ev("b1", "browser", 0, "page_view", "pv-b"), ev("b2", "browser", minute, "click", "pv-b"),
    ]
    path = tmp_path / "raw.parquet"
    pq.write_table(pa.Table.from_pylist(rows, RAW_SCHEMA), path)
    b = Bounds("shop", T0, T0 + DAY, T0 - DAY, T0 + 2 * DAY, 30 * 60_000, 24 * 3_600_000)
    e = make_engine(engine_kind, tmp_path / "data", scratch)
    try:
        e.read_parquet("raw", [str(path)], RAW_SCHEMA, key_offset=0)
        for name, sql in (("batch_anons", sessionize.batch_anons_sql(b)), ("dups", sessionize.dups_sql(b, e.dialect)),
                          ("slim", sessionize.slim_sql(b, e.dialect)), ("dropped", sessionize.dropped_sql(b, e.dialect)),
                          ("win", sessionize.windows_sql(b, e.dialect)), ("ev", sessionize.events_sql(b, e.dialect))):
            e.materialize(name, sql)
        got = e.query("SELECT r.event_id, e.page_view_id FROM ev e JOIN raw r ON r._row_key = e._row_key").to_pylist()
    finally:
        e.close()
    assert dict(sorted((g["event_id"], g["page_view_id"]) for g in got)) == {
        "s1": "pv-1", "s2": "pv-1", "s3": "s3", "s4": "s3", "s5": None, "s6": None, "n1": None, "b1": "pv-b", "b2": "pv-b",
    }
