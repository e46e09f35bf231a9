"""One behaviour suite for the counters seam, run against memory partials and a real Redis."""

import json
import math
import multiprocessing
import uuid
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beaconlake.backends.counters import IdSet
from beaconlake.backends.counters.windows import ALL_PATHS, Agg, WindowKey

T0 = 1_764_230_400_000  # 2025-11-27T08:00:00Z, a day/hour boundary is at T0 - 8h
MIN = 60_000


def window(name="page_view", group=ALL_PATHS, minute=T0, ids=("a",), nums=None, tenant="shop"):
    agg = Agg(IdSet(ids), len(ids))
    for n in nums or []:
        agg.add_numbers(n)
    return {WindowKey(tenant, name, group, minute): agg}


def published(*counters):
    for c in counters:
        c.flush()


def test_counts_distinct_and_numbers_of_one_window(make_counters):
    c = make_counters()
    c.add(window(ids=("a", "b", "a"), nums=[{"engaged_ms": 1000.0}, {"engaged_ms": 3000.0}]))
    c.add(window(ids=("c",), nums=[{"engaged_ms": 2000.0, "max_scroll_pct": 50.0}]))
    [r] = c.query("shop", "page_view", T0, T0 + MIN, "minute", False)
    assert (r["start"], r["path"], r["count"], r["distinct_anonymous_ids"]) == (T0, None, 4, 3)
    e = r["props"]["engaged_ms"]
    assert (e["count"], e["sum"], e["min"], e["max"], e["mean"]) == (3, 6000.0, 1000.0, 3000.0, 2000.0)
    assert math.isclose(e["stddev"], math.sqrt(2 / 3) * 1000)
    assert r["props"]["max_scroll_pct"]["count"] == 1


def test_partials_of_two_processes_merge_at_read_time(make_counters):
    one, two = make_counters("collector"), make_counters("collector")
    one.add(window(ids=("a", "b"), nums=[{"v": 1.0}]))
    two.add(window(ids=("b", "c"), nums=[{"v": 9.0}]))
    published(one, two)
    for reader in (one, two):
        [r] = reader.query("shop", "page_view", T0, T0 + MIN, "minute", False)
        assert (r["count"], r["distinct_anonymous_ids"]) == (4, 3)
        assert (r["props"]["v"]["min"], r["props"]["v"]["max"], r["props"]["v"]["mean"]) == (1.0, 9.0, 5.0)


def _writer(kind, folder, url, prefix, start):
    # a real second process: its own interpreter, its own memory
    if kind == "memory":
        from beaconlake.backends.counters.memory import MemoryCounters

        c = MemoryCounters(folder, "child")
    else:
        from beaconlake.backends.counters.redis import RedisCounters

        c = RedisCounters(url, prefix, 3_600_000)
    for i in range(start, start + 500):
        c.add(window(ids=(f"id-{i}",), minute=T0 + (i % 3) * MIN))
    c.close()


def test_two_os_processes_write_and_a_third_reads(make_counters, tmp_path):
    reader = make_counters()
    kind = make_counters.kind
    url = getattr(reader, "r", None) and reader.r.connection_pool.connection_kwargs
    url = f"redis://127.0.0.1:{url['port']}/0" if url else ""
    prefix = getattr(reader, "prefix", "")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(kind, tmp_path / "partials", url, prefix, s)) for s in (0, 250)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = reader.query("shop", "page_view", T0, T0 + 3 * MIN, "minute", False)
    assert sum(r["count"] for r in rows) == 1000
    [hour] = reader.query("shop", "page_view", T0, T0 + 3 * MIN, "hour", False)
    assert hour["count"] == 1000
    assert abs(hour["distinct_anonymous_ids"] - 750) <= 750 * 3 * reader.standard_error


def test_minutes_roll_up_to_hours_and_days_with_distinct_across_minutes(make_counters):
    c = make_counters()
    for m in range(120):
        c.add(window(ids=(f"u{m % 7}",), minute=T0 + m * MIN, nums=[{"v": float(m)}]))
    c.flush()
    hours = c.query("shop", "page_view", T0, T0 + 120 * MIN, "hour", False)
    assert [(h["start"], h["count"], h["distinct_anonymous_ids"]) for h in hours] == [(T0, 60, 7), (T0 + 60 * MIN, 60, 7)]
    assert hours[1]["props"]["v"]["min"] == 60.0
    [day] = c.query("shop", "page_view", T0, T0 + 120 * MIN, "day", False)
    assert day["start"] == T0 - T0 % 86_400_000
    assert (day["count"], day["distinct_anonymous_ids"], day["props"]["v"]["max"]) == (120, 7, 119.0)


def test_groups_by_path_and_keeps_tenants_and_names_apart(make_counters):
    c = make_counters()
    c.add(window(group="/a", ids=("x", "y")))
    c.add(window(group="/b", ids=("x",)))
    c.add(window(ids=("x", "y", "x")))
    c.add(window(tenant="other", ids=("z",)))
    c.add(window(name="search", ids=("q",)))
    grouped = c.query("shop", "page_view", T0, T0 + MIN, "minute", True)
    assert [(r["path"], r["count"]) for r in grouped] == [("/a", 2), ("/b", 1)]
    [total] = c.query("shop", "page_view", T0, T0 + MIN, "minute", False)
    assert total["count"] == 3
    assert c.query("other", "search", T0, T0 + MIN, "minute", False) == []
    assert c.series(T0, T0 + MIN) == {("shop", "page_view"), ("other", "page_view"), ("shop", "search")}


def test_range_is_half_open_and_prune_forgets_old_windows(make_counters):
    c = make_counters()
    for m in range(3):
        c.add(window(minute=T0 + m * MIN))
    assert [r["start"] for r in c.query("shop", "page_view", T0 + MIN, T0 + 2 * MIN, "minute", False)] == [T0 + MIN]
    c.prune(T0 + MIN)
    c.flush()
    assert [r["start"] for r in c.query("shop", "page_view", T0, T0 + 3 * MIN, "minute", False)] == [T0 + MIN, T0 + 2 * MIN]


def test_memory_partials_survive_a_restart_and_compact(make_counters, tmp_path):
    if make_counters.kind != "memory":
        pytest.skip("Redis keeps its state itself")
    from beaconlake.backends.counters.memory import MemoryCounters

    first = make_counters()
    first.add(window(ids=("a", "b")))
    first.close()  # shutdown: published
    second = make_counters()
    second.add(window(ids=("c",)))
    second.close()
    assert MemoryCounters.compact(tmp_path / "partials", T0 - MIN) == 1
    assert len(list((tmp_path / "partials").glob("*.bin"))) == 1
    fresh = make_counters()
    [r] = fresh.query("shop", "page_view", T0, T0 + MIN, "minute", False)
    assert (r["count"], r["distinct_anonymous_ids"]) == (3, 3)


# -- whatever numbers an event carries, a batch is folded whole ------------------------------

class Ev(msgspec.Struct):
    name: str
    anonymous_id: str
    url: str | None
    props: msgspec.Raw


# JSON number literals, as a sender may write them: any int (10**400 decodes to a Python int too
# large for a float), floats to the edges, and literals past a double's range (1e400) that the
# collector keeps as it got them.
NUMBER = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(10**400), max_value=10**400).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e308", "-1e308", "1.7976931348623157e308", "1e400", "-1e400", "-0.0", "0", "5e-324", str(2**70),
                     "1e154", "1.4e154"]),
)
VALUE = st.one_of(NUMBER, NUMBER, st.sampled_from(['"text"', "true", "null", "[1, 2]", '{"n": 1e400}']))
PROPS = st.dictionaries(st.sampled_from(["price", "qty", "ms", "x", "y"]), VALUE, max_size=5).map(
    lambda d: ("{" + ", ".join(f'"{k}": {v}' for k, v in d.items()) + "}").encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(PROPS, min_size=1, max_size=12), path=st.booleans())
def test_folding_any_numbers_never_raises_and_counts_every_event(make_counters, batch, path):
    from beaconlake import config
    from beaconlake.realtime.stats import Folder

    c = make_counters()
    name = "page_leave" if path else f"e{uuid.uuid4().hex[:12]}"  # page_leave is also counted per path
    tenant = f"t{uuid.uuid4().hex[:12]}"  # each example its own series
    folder = Folder(config.parse({}, Path("/tmp"), environ={}).realtime)
    events = [(Ev(name, f"a{i % 3}", "https://s.example/p", msgspec.Raw(p)), T0 + i) for i, p in enumerate(batch)]
    assert c.fold(folder, tenant, events, T0) == 0
    c.flush()
    [row] = c.query(tenant, name, T0, T0 + MIN, "minute", False)
    assert row["count"] == len(batch)  # every event counts, whatever its numbers
    json.dumps(row, allow_nan=False)  # what /v1/stats answers: no inf, no NaN
    for prop, s in row["props"].items():
        assert 1 <= s["count"] <= len(batch), prop
        assert s["min"] <= s["max"] and s["stddev"] >= 0
        assert s["min"] - abs(s["min"]) * 1e-9 <= s["mean"] <= s["max"] + abs(s["max"]) * 1e-9
    if path:
        [grouped] = c.query(tenant, name, T0, T0 + MIN, "minute", True)
        assert grouped["count"] == len(batch) and grouped["path"] == "/p"


# -- start-up: the backend's own preparation, before any process opens it --------------------

def test_up_prepares_memory_counters_by_compacting_the_last_runs_partials(tmp_path):
    from beaconlake.backends.counters import open_counters, prepare_counters
    from beaconlake.backends.counters.settings import MemoryCountersSettings

    section = MemoryCountersSettings()
    for ids in (("a", "b"), ("c",)):  # two processes of an earlier run
        c = open_counters(section, role="collector", state_dir=tmp_path, retention_ms=3_600_000)
        c.add(window(ids=ids))
        c.add(window(minute=T0 - 10 * MIN))  # past retention at the restart below
        c.close()
    assert len(list((tmp_path / "partials").glob("*.bin"))) == 2
    assert prepare_counters(section, state_dir=tmp_path, before_ms=T0 - MIN) == 1
    assert len(list((tmp_path / "partials").glob("*.bin"))) == 1
    fresh = open_counters(section, role="collector", state_dir=tmp_path, retention_ms=3_600_000)
    [r] = fresh.query("shop", "page_view", T0 - 20 * MIN, T0 + MIN, "minute", False)
    assert (r["start"], r["count"], r["distinct_anonymous_ids"]) == (T0, 3, 3)
    fresh.close()


def test_redis_counters_need_no_preparation(tmp_path):
    from beaconlake.backends.counters import prepare_counters
    from beaconlake.backends.counters.settings import RedisCountersSettings

    # nothing listens there: preparing must not even connect, nor write anything here
    assert prepare_counters(RedisCountersSettings(url="redis://127.0.0.1:9/0"), state_dir=tmp_path, before_ms=T0) == 0
    assert list(tmp_path.iterdir()) == []
