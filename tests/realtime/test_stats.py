"""Statistics windows: event time, allowed lateness, path groups, and closing to the lake."""

import json
from pathlib import Path

import msgspec
from hypothesis import example, given, settings
from hypothesis import strategies as st
import pyarrow.dataset as ds

from beaconlake import config
from beaconlake.backends.counters import IdSet
from beaconlake.backends.counters.memory import MemoryCounters
from beaconlake.backends.counters.windows import WindowKey, numbers_of
from beaconlake.backends.storage.local import LocalStorage
from beaconlake.realtime.closer import WindowCloser
from beaconlake.realtime.stats import Folder, page_path

T0 = 1_764_230_400_000  # a whole hour
MIN = 60_000


def folder(**rt):
    return Fold(**rt)


class Ev(msgspec.Struct):
    name: str
    anonymous_id: str
    url: str | None
    props: msgspec.Raw


def item(ts, name="page_view", anon="a", url="https://s.example/p?x=1", **props):
    return Ev(name, anon, url, msgspec.Raw(msgspec.json.encode(props) if props else b"null")), ts


class Fold:
    """Folder.fold into a fresh batch, as the Redis backend gets it."""

    def __init__(self, **rt):
        self.folder = Folder(config.parse({"realtime": rt}, Path("/tmp"), environ={}).realtime)

    def fold(self, items, now_ms):
        into = {}
        late = self.folder.fold("shop", items, now_ms, into, IdSet)
        return {WindowKey(*k): v for k, v in into.items()}, late


def test_events_fall_in_their_event_time_minute_not_arrival_time():
    f = folder(allowed_lateness_secs=120)
    windows, late = f.fold([item(T0 + 59_999), item(T0 + 60_000)], now_ms=T0 + 2 * MIN)
    assert late == 0
    assert sorted((k.minute, k.group) for k in windows) == [(T0, ""), (T0, "/p"), (T0 + MIN, ""), (T0 + MIN, "/p")]


def test_late_events_update_their_window_until_lateness_then_are_left_out():
    f = folder(allowed_lateness_secs=120)
    # window [T0, T0+60s) closes at T0 + 60s + 120s
    windows, late = f.fold([item(T0 + 5_000)], now_ms=T0 + 3 * MIN - 1)
    assert late == 0 and {k.minute for k in windows} == {T0}
    windows, late = f.fold([item(T0 + 5_000), item(T0 + 3 * MIN)], now_ms=T0 + 3 * MIN)
    assert late == 1 and {k.minute for k in windows} == {T0 + 3 * MIN}  # never a wrong window


def test_paths_only_for_page_events_and_capped_per_window():
    f = folder(max_paths_per_window=2)
    items = [item(T0, url=f"https://s.example/{i}") for i in range(4)] + [item(T0, name="search")]
    windows, _ = f.fold(items, now_ms=T0)
    groups = sorted(k.group for k in windows if k.name == "page_view")
    assert groups == ["", "(other)", "/0", "/1"]
    assert sorted(k.group for k in windows if k.name == "search") == [""]
    assert windows[next(k for k in windows if k.group == "(other)")].count == 2
    assert page_path(None) == "/" and page_path("https://x.example") == "/"


def test_numeric_props_only_numbers():
    f = folder()
    windows, _ = f.fold([item(T0, name="page_leave", engaged_ms=1200, max_scroll_pct=80, ok=True, label="x")], T0)
    agg = next(a for k, a in windows.items() if k.group == "")
    assert sorted(agg.nums) == ["engaged_ms", "max_scroll_pct"]



_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@example(props={"n": 0}, as_text=False)
@example(props={"n": -0.0, "s": "x"}, as_text=True)
@given(props=st.dictionaries(st.text(max_size=6), _json_values, max_size=6), as_text=st.booleans())
def test_fold_takes_every_number_the_props_hold_whether_bytes_or_text(props, as_text):
    """The fold skips decoding props without a digit: it must still see every number, from the
    collector's bytes and the deliverer's text alike."""
    data = msgspec.json.encode(props)
    ev = Ev("buy", "a", None, msgspec.Raw(data))
    if as_text:
        ev = TextEv("buy", "a", None, data.decode())
    f = folder()
    windows, late = f.fold([(ev, T0)], T0)
    assert late == 0
    want, _ = numbers_of(props, f.folder.max_numbers)
    agg = windows[WindowKey("shop", "buy", "", T0)]
    assert {k: v[1] for k, v in agg.nums.items()} == want


class TextEv(msgspec.Struct):
    name: str
    anonymous_id: str
    url: str | None
    props: str | None

def test_closed_windows_go_to_the_lake_by_day_with_hour_rollups(tmp_path):
    counters = MemoryCounters(tmp_path / "partials", "w")
    f = folder(allowed_lateness_secs=60)
    counters.fold(f.folder, "shop", [item(T0 + m * MIN + 1, anon=f"a{m % 3}", engaged_ms=m) for m in range(61)], T0)
    storage = LocalStorage(tmp_path / "lake")
    closer = WindowCloser(counters, storage, tmp_path / "closed.json", 60_000, 0, 3_600_000 * 2)
    assert closer.run(T0 + 30 * MIN) > 0  # minutes up to T0 + 28 min are closed
    assert closer.run(T0 + 30 * MIN) == 0  # nothing new
    closer.run(T0 + 62 * MIN)  # minute 60 closed at 60 + 1 + 1 (lateness), and the hour T0 with it
    table = ds.dataset(tmp_path / "lake" / "stats", format="parquet", partitioning="hive").to_table().to_pylist()
    minutes = [r for r in table if r["grain"] == "minute" and r["path"] is None]
    assert sorted(r["window_start"].timestamp() * 1000 for r in minutes) == [T0 + m * MIN for m in range(61)]
    [hour] = [r for r in table if r["grain"] == "hour" and r["path"] is None]
    assert (hour["count"], hour["distinct_anonymous_ids"]) == (60, 3)
    assert json.loads(hour["props"])["engaged_ms"]["max"] == 59
    assert {r["path"] for r in table if r["grain"] == "hour"} == {None, "/p"}
    assert {(r["tenant"], r["year"], r["month"], r["day"]) for r in table} == {("shop", 2025, 11, 27)}
