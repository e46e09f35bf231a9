"""The convert rules, checked on hand-built streams whose sessions are known, on both engines."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import pyarrow.parquet as pq
import pytest
from rawlake import HOUR
from scenarios import T0

from beaconlake.convert import buckets
from beaconlake.convert.catalog import local_path


@pytest.fixture
def lake(baked, engine_kind):
    return baked(engine_kind)


def sessions_of(lake, anon: str, tenant: str = "shop") -> list[dict]:
    return [s for s in lake.rows("sessions", ("start_ts",)) if s["anonymous_id"] == anon and s["tenant"] == tenant]


def events_of(lake, anon: str, tenant: str = "shop") -> list[dict]:
    return [e for e in lake.rows("events", ("event_ts", "event_id")) if e["anonymous_id"] == anon and e["tenant"] == tenant]


def test_a_gap_of_up_to_30_minutes_keeps_the_session(lake):
    assert len(sessions_of(lake, "gap-under")) == 1
    assert len(sessions_of(lake, "gap-exact")) == 1
    assert sessions_of(lake, "gap-exact")[0]["duration_ms"] == 30 * 60_000


def test_a_gap_just_over_30_minutes_starts_a_new_session(lake):
    first, second = sessions_of(lake, "gap-over")
    assert (first["session_index"], second["session_index"]) == (1, 2)
    assert (first["events"], second["events"]) == (1, 1)
    ids = {e["session_id"] for e in events_of(lake, "gap-over")}
    assert ids == {first["session_id"], second["session_id"]}


def test_a_session_crossing_midnight_stays_one_session(lake):
    [s] = sessions_of(lake, "midnight")
    assert s["session_date"] == date(2026, 3, 10)
    assert s["duration_ms"] == 25 * 60_000 and s["page_views"] == 2
    evs = events_of(lake, "midnight")
    assert {e["event_date"] for e in evs} == {date(2026, 3, 10), date(2026, 3, 11)}
    assert {e["session_id"] for e in evs} == {s["session_id"]}
    assert s["exit_path"] == "/" and s["engaged_ms"] == 4000


def test_activity_beyond_24_hours_is_cut_and_flagged(lake):
    pieces = sessions_of(lake, "marathon")
    assert [p["events"] for p in pieces] == [72, 72, 7]
    assert [p["session_index"] for p in pieces] == [1, 2, 3]
    assert all(p["split"] for p in pieces)
    assert pieces[0]["duration_ms"] == 23 * HOUR + 40 * 60_000
    assert pieces[1]["start_ts"].timestamp() * 1000 == T0 + 24 * HOUR
    assert not any(s["split"] for s in sessions_of(lake, "gap-over"))


def test_duplicates_from_replayed_delivery_are_kept_once_the_first_received(lake):
    evs = events_of(lake, "dup")
    assert len(evs) == 2 and len({e["event_id"] for e in evs}) == 2
    assert all(e["title"] == "A page" and e["segment"] == "seg-0001" for e in evs)
    [edge] = events_of(lake, "dup-edge")  # its copy sat in the next day's files
    assert edge["event_date"] == date(2026, 3, 10) and edge["title"] == "A page"
    all_ids = [(e["tenant"], e["event_id"]) for e in lake.rows("events")]
    assert len(all_ids) == len(set(all_ids))


def test_identify_in_the_middle_of_a_session_stitches_the_whole_session(lake):
    evs = events_of(lake, "ident")
    assert [e["user_id"] for e in evs] == [None, None, "u-42", "u-42"]
    assert {e["stitched_user"] for e in evs} == {"u-42"}
    [s] = sessions_of(lake, "ident")
    assert s["stitched_user"] == "u-42"
    idents = {(r["tenant"], r["anonymous_id"]): r["user_id"] for r in lake.rows("identities")}
    assert idents[("shop", "ident")] == "u-42"
    assert all(p["stitched_user"] == "u-42" for p in lake.rows("pageviews") if p["anonymous_id"] == "ident")


def test_page_views_carry_engagement_scroll_and_interactions(lake):
    views = sorted((p for p in lake.rows("pageviews") if p["anonymous_id"] == "reader"), key=lambda p: p["view_index"])
    first, second = views
    assert first["page_view_id"] == "pv-r1" and first["view_index"] == 1
    assert first["engaged_ms"] == 45000
    assert first["max_scroll_pct"] == 80  # a scroll event went deeper than page_leave reported
    assert first["time_to_first_interaction_ms"] == 20_000
    assert first["clicks"] == 1 and first["left_page"] is True
    assert first["path"] == "/landing" and first["duration_ms"] == 120_000
    assert second["engaged_ms"] == 20000 and second["view_index"] == 2 and second["clicks"] == 0


def test_sessions_carry_landing_exit_referrer_and_campaign(lake):
    [s] = sessions_of(lake, "reader")
    assert s["page_views"] == 2 and s["engaged_ms"] == 65000 and s["events"] == 7
    assert (s["low_events"], s["mid_events"], s["high_events"]) == (3, 4, 0)
    assert s["landing_path"] == "/landing" and s["exit_path"] == "/p/boots"
    assert s["referrer_host"] == "www.google.com"
    assert (s["utm_source"], s["utm_medium"], s["utm_campaign"]) == ("news", "email", "spring sale 2026")
    assert s["utm_term"] is None
    assert (s["country"], s["locale"], s["timezone"]) == ("DE", "de-DE", "Europe/Berlin")
    assert (s["browser"], s["os"], s["device"]) == ("Firefox", "Linux", "Other")
    assert s["bounced"] is False and s["is_bot"] is False


def test_bounces_and_bots_are_flagged(lake):
    assert sessions_of(lake, "bouncer")[0]["bounced"] is True
    assert sessions_of(lake, "crawler")[0]["is_bot"] is True
    assert sessions_of(lake, "reader")[0]["is_bot"] is False


def test_high_level_events_are_ready_for_counting(lake):
    [h] = [r for r in lake.rows("high_level_events") if r["anonymous_id"] == "buyer"]
    assert h["name"] == h["definition"] == "viewed_two_then_cart" and h["source"] == "browser"
    buyer = events_of(lake, "buyer")
    assert h["matched_event_ids"] == [buyer[0]["event_id"], buyer[1]["event_id"]]
    assert h["session_id"] == buyer[0]["session_id"] and h["session_index"] == 1
    highs = [e for e in lake.rows("events") if e["level"] == "high"]
    assert len(lake.rows("high_level_events")) == len(highs)


def test_schema_properties_are_promoted_to_typed_columns(lake):
    schema = lake.store().table("events").schema()
    types = {f.name: str(f.field_type) for f in schema.fields if f.name.startswith("prop_")}
    assert types == {"prop_sku": "string", "prop_price": "double", "prop_qty": "long", "prop_gift": "boolean"}
    [cart] = [e for e in events_of(lake, "buyer") if e["name"] == "add_to_cart"]
    assert (cart["prop_sku"], cart["prop_price"], cart["prop_qty"], cart["prop_gift"]) == ("B-42", 129.5, 2, True)
    assert all(e["prop_sku"] is None for e in lake.rows("events") if e["name"] != "add_to_cart")


def test_events_without_the_tracker_join_the_page_view_before_them(lake):
    [view] = [p for p in lake.rows("pageviews") if p["anonymous_id"] == "sdk"]
    assert view["clicks"] == 1 and view["path"] == "/from-sdk"


def test_tenants_are_kept_apart(lake):
    assert len(sessions_of(lake, "twin", "shop")) == 1 and len(sessions_of(lake, "twin", "blog")) == 1
    assert sessions_of(lake, "twin", "shop")[0]["session_id"] != sessions_of(lake, "twin", "blog")[0]["session_id"]


def test_every_event_belongs_to_a_session_and_counts_add_up(lake):
    sessions = {s["session_id"]: s for s in lake.rows("sessions")}
    per_session = defaultdict(int)
    for e in lake.rows("events"):
        per_session[e["session_id"]] += 1
    assert per_session == {sid: s["events"] for sid, s in sessions.items()}
    raw = {(t, e) for p in lake.lake.rglob("*.parquet")
           for t, e in zip(*pq.read_table(p, columns=["tenant", "event_id"]).to_pydict().values(), strict=True)}
    assert sum(per_session.values()) == len(raw)  # every event of the raw lake, once


def test_files_are_one_per_table_partition_typed_and_dictionary_encoded(lake):
    store = lake.store()
    for name in ("events", "sessions", "pageviews"):
        table = store.table(name)
        files = [t.file for t in table.scan().plan_files()]
        # events: one file per bucket of a day (and appended files); the others: one per day
        partitions = [(*f.partition, buckets.of_path(f.file_path) if name == "events" else None) for f in files]
        partitions = [p for p in partitions if p[-1] != buckets.DELTA]
        assert len(partitions) == len(set(partitions)), f"{name}: more than one file in a partition"
    events = store.table("events")
    assert str(events.schema().find_field("event_ts").field_type) == "timestamptz"
    assert [f.name for f in events.spec().fields] == ["tenant", "event_ts_day"]
    path = local_path(next(iter(events.scan().plan_files())).file.file_path)
    meta = pq.ParquetFile(path).metadata
    level = [meta.row_group(0).column(i) for i in range(meta.num_columns) if meta.row_group(0).column(i).path_in_schema == "level"][0]
    assert any("DICTIONARY" in enc for enc in level.encodings)
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_a_property_name_with_a_trailing_newline_is_no_column():
    from types import SimpleNamespace

    from beaconlake.convert.promote import promoted_columns

    schema = {"type": "object", "properties": {"price": {"type": "number"}, "price\n": {"type": "number"},
                                               "sku\n": {"type": "string"}}}
    tenant = SimpleNamespace(id="shop", schemas=[SimpleNamespace(level="mid", name="add_to_cart", schema=schema, file=None)])
    assert [p.column for p in promoted_columns([tenant])] == ["prop_price"]
