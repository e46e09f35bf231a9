"""Each feature's SQL on hand-built tables whose values are known, on the DuckDB engine."""

import math
from datetime import UTC, datetime

import msgspec
import pyarrow as pa
import pytest

from beaconlake.analyze.features import Query, changed_people, tenant_clock
from beaconlake.analyze.settings import AnalyzeSettings
from beaconlake.backends.engine.duckdb import DuckDBEngine
from beaconlake.backends.engine.settings import DuckDBEngineSettings, SparkEngineSettings
from beaconlake.convert.tables import (
    EVENTS,
    HIGH_LEVEL_EVENTS,
    IDENTITIES,
    PAGEVIEWS,
    SESSIONS,
)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def table(tdef, rows):
    """An Arrow table of the convert table's schema; ``*_ts`` given as ISO text, unset columns NULL."""
    schema = tdef.arrow
    cols = {}
    for f in schema:
        values = [r.get(f.name) for r in rows]
        if pa.types.is_timestamp(f.type):
            values = [None if v is None else datetime.fromisoformat(v).replace(tzinfo=UTC) for v in values]
        cols[f.name] = pa.array(values, f.type)
    return pa.table(cols, schema=schema)


def ev(anon, ts, name, session, props=None, level="mid", tenant="shop", received=None):
    return {"tenant": tenant, "event_id": f"{anon}-{ts}-{name}", "level": level, "name": name, "event_ts": ts,
            "anonymous_id": anon, "session_id": session, "props": props, "is_bot": False,
            "received_at": received or ts}


# u1 browses on two browsers (a1 on a desktop on Monday morning, a2 on a phone on Saturday evening);
# b1 is anonymous; c1 is a bot; "other" is another tenant with the same anonymous id as b1.
SESSIONS_ROWS = [
    {"tenant": "shop", "session_id": "s1", "anonymous_id": "a1", "start_ts": "2026-03-02T09:00:00", "end_ts": "2026-03-02T09:10:00",
     "page_views": 2, "engaged_ms": 60_000, "bounced": False, "device": "Other", "referrer_host": "google.com", "is_bot": False},
    {"tenant": "shop", "session_id": "s2", "anonymous_id": "a2", "start_ts": "2026-03-07T20:00:00", "end_ts": "2026-03-07T20:05:00",
     "page_views": 1, "engaged_ms": 5_000, "bounced": True, "device": "iPhone", "utm_source": "newsletter", "is_bot": False},
    {"tenant": "shop", "session_id": "s3", "anonymous_id": "b1", "start_ts": "2026-03-03T14:00:00", "end_ts": "2026-03-03T14:01:00",
     "page_views": 1, "engaged_ms": 30_000, "bounced": False, "device": "Other", "utm_source": "ads", "utm_medium": "cpc", "is_bot": False},
    {"tenant": "shop", "session_id": "s4", "anonymous_id": "c1", "start_ts": "2026-03-03T14:00:00", "end_ts": "2026-03-03T14:01:00",
     "page_views": 1, "engaged_ms": 0, "bounced": True, "device": "Spider", "is_bot": True},
    {"tenant": "other", "session_id": "s9", "anonymous_id": "b1", "start_ts": "2026-03-03T14:00:00", "end_ts": "2026-03-03T14:01:00",
     "page_views": 5, "engaged_ms": 1, "bounced": False, "device": "Other", "is_bot": False},
]
PAGEVIEW_ROWS = [
    {"tenant": "shop", "page_view_id": "p1", "session_id": "s1", "anonymous_id": "a1", "view_ts": "2026-03-02T09:00:00",
     "path": "/tents/t1", "engaged_ms": 40_000, "max_scroll_pct": 80, "clicks": 3, "rage_clicks": 1},
    {"tenant": "shop", "page_view_id": "p2", "session_id": "s1", "anonymous_id": "a1", "view_ts": "2026-03-02T09:04:00",
     "path": "/sale/x", "engaged_ms": 20_000, "max_scroll_pct": 40, "clicks": 1, "rage_clicks": 0},
    {"tenant": "shop", "page_view_id": "p3", "session_id": "s2", "anonymous_id": "a2", "view_ts": "2026-03-07T20:00:00",
     "path": "/search", "engaged_ms": 5_000, "max_scroll_pct": 10, "clicks": 0, "rage_clicks": 0},
    {"tenant": "shop", "page_view_id": "p4", "session_id": "s3", "anonymous_id": "b1", "view_ts": "2026-03-03T14:00:00",
     "path": "/Boots/b2", "engaged_ms": None, "max_scroll_pct": 50, "clicks": 2, "rage_clicks": 0},
    {"tenant": "shop", "page_view_id": "p5", "session_id": "s4", "anonymous_id": "c1", "view_ts": "2026-03-03T14:00:00",
     "path": "/jackets/j", "engaged_ms": 0, "max_scroll_pct": 0, "clicks": 0, "rage_clicks": 0},
]
EVENT_ROWS = [
    ev("a1", "2026-03-02T09:00:00", "page_view", "s1"),
    ev("a1", "2026-03-02T09:00:01", "product_view", "s1"),
    *[ev("a1", f"2026-03-02T09:01:0{i}", "pointer_move", "s1", level="low") for i in range(3)],
    ev("a1", "2026-03-02T09:04:00", "page_view", "s1"),
    ev("a1", "2026-03-02T09:04:01", "product_view", "s1"),
    ev("a1", "2026-03-02T09:05:00", "add_to_cart", "s1", '{"sku": "x", "price": 99.5}'),
    ev("a1", "2026-03-02T09:08:00", "purchase", "s1", '{"value": 99.5, "currency": "EUR"}'),
    ev("a1", "2026-03-02T09:10:00", "page_leave", "s1"),
    ev("a2", "2026-03-07T20:00:00", "page_view", "s2", received="2026-03-07T20:00:30"),
    ev("a2", "2026-03-07T20:00:01", "search", "s2", '{"query": "tent"}'),
    ev("a2", "2026-03-07T20:00:02", "touch", "s2", level="low"),
    ev("a2", "2026-03-07T20:05:00", "page_leave", "s2"),
    ev("b1", "2026-03-03T14:00:00", "page_view", "s3"),
    ev("b1", "2026-03-03T14:01:00", "page_leave", "s3"),
    {**ev("c1", "2026-03-03T14:00:00", "page_view", "s4"), "is_bot": True},
    ev("b1", "2026-03-03T14:00:00", "page_view", "s9", tenant="other"),
]
AS_OF = ms("2026-03-09T00:00:00")


@pytest.fixture(scope="module", params=["duckdb", "spark"])
def engine(request, tmp_path_factory):
    """The same SQL on both engines: DuckDB, and Spark in local mode (the scale-out path)."""
    if request.param == "spark":
        pytest.importorskip("pyspark", reason="the Spark engine needs pyspark: pip install 'beaconlake[spark]'")
        request.applymarker(pytest.mark.spark)  # `-m "not spark"` leaves Spark out
        from beaconlake.backends.engine import open_engine
        from beaconlake.backends.engine.spark import start_session

        # the convert tests' session settings: the same session is reused when both run
        spark = SparkEngineSettings(master="local[2]", driver_memory_mb=1024, shuffle_partitions=1, conf={
            "spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"})
        scratch = str(tmp_path_factory.mktemp("spark-scratch"))
        e = open_engine(spark, scratch, session=start_session(spark, scratch))
    else:
        e = DuckDBEngine(DuckDBEngineSettings(threads=1, memory_limit_mb=256), str(tmp_path_factory.mktemp("features")))
    e.register_arrow("events", table(EVENTS, EVENT_ROWS))
    e.register_arrow("sessions", table(SESSIONS, SESSIONS_ROWS))
    e.register_arrow("pageviews", table(PAGEVIEWS, PAGEVIEW_ROWS))
    e.register_arrow("high_level_events", table(HIGH_LEVEL_EVENTS, [
        {"tenant": "shop", "event_id": "h1", "name": "considered_then_added", "event_ts": "2026-03-02T09:05:00",
         "anonymous_id": "a1"},
        {"tenant": "shop", "event_id": "h2", "name": "considered_then_added", "event_ts": "2026-03-09T09:05:00",
         "anonymous_id": "a1"},  # after as_of
    ]))
    e.register_arrow("identities", table(IDENTITIES, [
        {"tenant": "shop", "anonymous_id": "a1", "user_id": "u1"},
        {"tenant": "shop", "anonymous_id": "a2", "user_id": "u1"},
    ]))
    yield e
    e.close()


def q(engine, as_of=AS_OF, persons=None, **settings):
    s = msgspec.convert(settings, AnalyzeSettings)
    return Query(engine.dialect, "shop", s.goal("shop"), s, as_of, persons)


def features(engine, **kw):
    return {r["person_id"]: r for r in engine.query(q(engine, **kw).features()).to_pylist()}


def test_people_are_stitched_users_else_anonymous_ids_and_bots_are_left_out(engine):
    assert sorted(features(engine)) == ["b1", "u1"]


def test_visit_features(engine):
    u = features(engine)["u1"]
    assert u["first_seen"] == ms("2026-03-02T09:00:00")
    assert u["last_seen"] == ms("2026-03-07T20:05:00")
    assert u["recency_days"] == pytest.approx((AS_OF - ms("2026-03-07T20:05:00")) / 86_400_000)
    assert u["sessions"] == 2
    assert u["sessions_per_week"] == pytest.approx(2.0)  # seen for less than a week: per one week
    assert u["page_views"] == 3 and u["pageviews_per_session"] == pytest.approx(1.5)
    assert u["engaged_secs"] == pytest.approx(65.0)
    assert u["engaged_secs_per_session"] == pytest.approx(32.5)
    assert u["engaged_secs_per_page"] == pytest.approx(65 / 3)
    assert u["bounce_rate"] == pytest.approx(0.5)
    assert u["avg_scroll_pct"] == pytest.approx((80 + 40 + 10) / 3)


def test_activity_rates(engine):
    u = features(engine)["u1"]
    engaged_min = 65 / 60
    assert u["clicks_per_min"] == pytest.approx(4 / engaged_min)
    assert u["pointer_per_min"] == pytest.approx(4 / engaged_min)  # 3 pointer_move + 1 touch
    assert u["rage_clicks"] == 1 and u["rage_clicks_per_page"] == pytest.approx(1 / 3)


def test_habits_device_and_acquisition(engine):
    f = features(engine)
    u, b = f["u1"], f["b1"]
    assert (u["morning_share"], u["afternoon_share"], u["evening_share"], u["night_share"]) == (0.5, 0.0, 0.5, 0.0)
    assert u["weekend_share"] == 0.5  # Saturday 7 March
    assert u["mobile_share"] == 0.5  # the iPhone session
    assert u["first_referrer_host"] == "google.com" and u["first_utm_source"] is None  # the first session's
    assert b["afternoon_share"] == 1.0 and b["weekend_share"] == 0.0 and b["mobile_share"] == 0.0
    assert (b["first_utm_source"], b["first_utm_medium"]) == ("ads", "cpc")


def test_interests_and_categories(engine):
    f = features(engine)
    u, b = f["u1"], f["b1"]
    tents, sale = 40_000 + 1_000, 20_000 + 1_000  # engaged ms + one second per view
    p = tents / (tents + sale)
    assert u["categories_viewed"] == 2  # /search is not a category
    assert u["sale_share"] == pytest.approx(1 - p)
    # three categories in the tenant: tents, sale, boots (the bot's jackets do not count)
    assert u["category_entropy"] == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(3))
    assert b["category_entropy"] == 0.0 and b["categories_viewed"] == 1
    rows = engine.query(q(engine).interests()).to_pylist()
    assert [(r["person_id"], r["category"], round(r["weight"], 4)) for r in rows] == [
        ("b1", "boots", 1.0), ("u1", "tents", round(p, 4)), ("u1", "sale", round(1 - p, 4))]


def test_category_rules_come_first(engine):
    rows = engine.query(q(engine, category_rules=[{"prefix": "/sale", "category": "deals"}]).interests()).to_pylist()
    assert {r["category"] for r in rows if r["person_id"] == "u1"} == {"tents", "deals"}


def test_conversions_value_and_decisiveness_inputs(engine):
    f = features(engine)
    u, b = f["u1"], f["b1"]
    assert u["searches_per_session"] == 0.5
    assert (u["product_views"], u["cart_adds"], u["cart_adds_per_product_view"]) == (2, 1, 0.5)
    assert u["conversions"] == 1 and u["conversion_rate"] == 0.5
    assert u["monetary_value"] == pytest.approx(99.5)
    assert u["steps_to_convert"] == 2 and u["mins_to_convert"] == pytest.approx(8.0)
    assert b["conversions"] == 0 and b["steps_to_convert"] is None and b["monetary_value"] == 0
    assert u["high_level_events"] == 1  # the one after as_of is not counted


def test_goal_and_value_property_are_configurable(engine):
    u = features(engine, goal_events=["add_to_cart"], value_property="price")["u1"]
    assert u["conversions"] == 1 and u["monetary_value"] == pytest.approx(99.5)
    assert u["mins_to_convert"] == pytest.approx(5.0)


def test_as_of_cuts_history(engine):
    f = features(engine, as_of=ms("2026-03-05T00:00:00"))
    assert f["u1"]["sessions"] == 1 and f["u1"]["searches_per_session"] == 0
    assert f["u1"]["recency_days"] == pytest.approx((ms("2026-03-05T00:00:00") - ms("2026-03-02T09:10:00")) / 86_400_000)


def test_persons_filter_and_changed_people(engine):
    engine.register_arrow("only_b", pa.table({"person_id": ["b1"]}))
    assert list(features(engine, persons="only_b")) == ["b1"]
    changed = engine.query(changed_people(engine.dialect, "shop", ms("2026-03-07T20:00:10"))).to_pylist()
    assert changed == [{"person_id": "u1"}]  # a2's page_view was received at 20:00:30, stitched to u1
    clock = engine.query(tenant_clock(engine.dialect, "shop")).to_pylist()[0]
    assert clock["as_of"] == ms("2026-03-07T20:05:00")


def test_identity_lists_each_persons_browsers(engine):
    rows = engine.query(q(engine).identity()).to_pylist()
    assert sorted((r["person_id"], r["user_id"], r["anonymous_id"]) for r in rows) == [
        ("b1", None, "b1"), ("u1", "u1", "a1"), ("u1", "u1", "a2")]
    hl = engine.query(q(engine).high_level()).to_pylist()
    assert hl == [{"person_id": "u1", "name": "considered_then_added", "n": 2}]
