"""The persona visitor simulator: deterministic, valid tracker events, delivered like the collector's."""

import collections

import msgspec
import pyarrow.dataset as ds
import pytest

from beaconlake import config
from beaconlake.simulate import PERSONAS, visits, write_raw_lake
from beaconlake.types import ClientEvent

START = 1_761_955_200_000  # 2025-11-01T00:00:00Z
DAY = 86_400_000


def test_public_interface():
    assert [p.name for p in PERSONAS] == ["weekend_camper", "bargain_hunter", "loyal_regular", "researcher",
                                          "window_shopper"]
    v = next(visits(10, 3, 1, START))
    assert isinstance(v.anonymous_id, str) and v.persona in {p.name for p in PERSONAS}
    assert v.user_id is None or isinstance(v.user_id, str)
    assert isinstance(v.events, list) and isinstance(v.events[0], dict)


def test_same_arguments_same_events_and_later_starts_continue_the_same_people():
    a = list(visits(20, 5, 9, START))
    assert [v.events for v in a] == [v.events for v in visits(20, 5, 9, START)]
    later = list(visits(20, 5, 9, START + 5 * DAY))
    ids_a = {e["event_id"] for v in a for e in v.events}
    ids_later = {e["event_id"] for v in later for e in v.events}
    assert not ids_a & ids_later  # new events, or convert would drop them as duplicates
    people = {v.person: v.anonymous_id for v in a}
    assert all(people.get(v.person, v.anonymous_id) == v.anonymous_id for v in later)


def test_events_are_valid_tracker_events_in_time_order():
    names = collections.Counter()
    for v in visits(25, 7, 2, START):
        ts = [e["client_ts"] for e in v.events]
        assert ts == sorted(ts)
        assert all(START <= t < START + 8 * DAY for t in ts)
        for e in v.events:
            checked = msgspec.json.decode(msgspec.json.encode(e), type=ClientEvent)  # the collector's own check
            assert checked.anonymous_id == v.anonymous_id
            names[(e["level"], e["name"])] += 1
        leaves = [e for e in v.events if e["name"] == "page_leave"]
        assert all(0 <= e["props"]["max_scroll_pct"] <= 100 and e["props"]["engaged_ms"] >= 0 for e in leaves)
        assert all(isinstance(e["props"]["value"], float) for e in v.events if e["name"] == "purchase")
    for level, name in [("mid", "page_view"), ("mid", "page_leave"), ("low", "click"), ("low", "scroll"),
                        ("mid", "add_to_cart"), ("mid", "purchase"), ("mid", "search"), ("mid", "identify"),
                        ("low", "rage_click")]:
        assert names[(level, name)] > 0, name


def test_personas_differ_as_described():
    per = collections.defaultdict(lambda: collections.Counter())
    for v in visits(50, 14, 4, START):
        c = per[v.persona]
        c["visits"] += 1
        c["mobile"] += "Mobile" in v.user_agent
        c["sale_pages"] += sum(1 for e in v.events if e["name"] == "page_view" and "/sale/" in e["url"])
        c["pages"] += sum(1 for e in v.events if e["name"] == "page_view")
    assert per["bargain_hunter"]["visits"] > per["window_shopper"]["visits"]
    assert per["bargain_hunter"]["sale_pages"] / per["bargain_hunter"]["pages"] > 0.5
    assert per["researcher"]["pages"] / per["researcher"]["visits"] > per["window_shopper"]["pages"] / per["window_shopper"]["visits"]
    assert per["window_shopper"]["mobile"] / per["window_shopper"]["visits"] > 0.8


def test_bad_arguments():
    with pytest.raises(ValueError, match="people=0"):
        next(visits(0, 3, 1, START))


def test_write_raw_lake_delivers_like_the_collector(tmp_path):
    settings = config.parse({"data_dir": str(tmp_path / "data"), "tenants": [
        {"id": "shop", "write_key": "wk_shopshopshopshopshop", "read_key": "rk_shopshopshopshopshop"}]},
        tmp_path, environ={})
    vs = list(visits(10, 3, 5, START))
    n = write_raw_lake(settings, vs)
    assert n == sum(len(v.events) for v in vs)
    files = sorted((tmp_path / "data" / "lake" / "raw").rglob("*.parquet"))
    assert files and all("tenant=shop/level=" in str(f) and "/year=2025/month=11/day=0" in str(f) for f in files)
    table = ds.dataset([str(f) for f in files], format="parquet").to_table()
    assert table.num_rows == n
    rows = table.to_pylist()
    assert len({r["event_id"] for r in rows}) == n
    mobile = [r for r in rows if "iPhone" in (r["user_agent"] or "")]
    assert mobile and mobile[0]["ua_device"] == "iPhone"  # the collector's user-agent parsing
    assert all(r["event_ts"] == r["client_ts"] + 80 for r in rows)  # clock-skew correction: the network delay
    assert not (tmp_path / "data" / "run" / "simulate-spool").exists()
