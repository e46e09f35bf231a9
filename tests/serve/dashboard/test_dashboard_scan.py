"""The dashboard's views read only the files and columns they ask for, and answer exactly as a
read of the whole tables does: on the embedded defaults (local files, read in place by DuckDB)
and on a remote setup (SQL catalog on PostgreSQL, warehouse on S3: moto), where pyiceberg's
reader fetches the planned files."""

from __future__ import annotations

import functools
from datetime import date, timedelta

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from realtime.servers import fresh_postgres_db
from scan_lake import DAY_MS, DAYS, START_MS, build, copy_tables
from support import moto_s3

from beaconlake.convert.scan import Read
from beaconlake.serve.dashboard import funnel, people, traffic
from beaconlake.serve.dashboard.tables import Tables, WholeTables

EPOCH = date(1970, 1, 1)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return build(tmp_path_factory.mktemp("scan"))


@pytest.fixture(scope="module")
def remote(lake):
    from pyiceberg.catalog.sql import SqlCatalog

    dsn = dict(part.split("=") for part in fresh_postgres_db().split())
    with moto_s3() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k",
                     aws_secret_access_key="s").create_bucket(Bucket="warehouse")
        catalog = SqlCatalog("beaconlake", **{
            "uri": f"postgresql+psycopg://{dsn['user']}@{dsn['host']}:{dsn['port']}/{dsn['dbname']}",
            "warehouse": "s3://warehouse/tables", "s3.endpoint": endpoint, "s3.region": "us-east-1",
            "s3.access-key-id": "k", "s3.secret-access-key": "s"})
        yield Tables(lake, store=copy_tables(lake, catalog))


@pytest.fixture(scope="module")
def readers(lake, remote):
    return {"local": Tables(lake), "remote": remote, "whole": WholeTables(lake)}


@functools.cache
def known_ids(t: Tables) -> list[str]:
    with t.view() as v:
        v.read(Read("sessions", ("tenant", "anonymous_id", "stitched_user"), "shop"))
        rows = v.query("SELECT DISTINCT anonymous_id, stitched_user FROM sessions ORDER BY 1")
    return sorted({r["anonymous_id"] for r in rows} | {r["stitched_user"] for r in rows if r["stitched_user"]})


def answers(t: Tables, lake, tenant: str, start: int, end: int, by: str, q: str, who: str) -> dict:
    tenant_settings = next((x for x in lake.tenants if x.id == tenant), lake.tenants[0])
    return {
        "traffic": traffic.traffic(t, tenant, start, end, by, lake.convert.max_session_hours),
        "sequences": funnel.funnels(t, tenant_settings, start, end) if tenant_settings.id == tenant else None,
        "search": people.search(t, tenant, q, 20),
        "person": people.person(t, tenant, who, 10),
    }


def test_the_data_is_not_trivial(readers, lake):
    """The comparisons below mean something: both tenants have sessions, page views, funnels
    with people at every step, high-level events, and people with several sessions."""
    t = readers["local"]
    for tenant in ("shop", "other"):
        out = answers(t, lake, tenant, START_MS, START_MS + DAYS * DAY_MS, "day", "", "nobody")
        assert out["traffic"]["totals"]["sessions"] > 20 and out["traffic"]["totals"]["page_views"] > 50
        fun = out["sequences"]["funnels"]
        assert all(s["people"] > 0 for s in fun[0]["steps"]) and fun[0]["completed"]["events"] > 0
        assert len(out["search"]["people"]) >= 10
    who = people.search(t, "shop", "", 1)["people"][0]["person_id"]
    one = people.person(t, "shop", who, 10)
    assert len(one["sessions"]) > 1 and one["sessions"][0]["pages"] and one["high_level"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenant=st.sampled_from(["shop", "other", "nobody"]),
       start_h=st.integers(-48, (DAYS + 1) * 24), hours=st.integers(1, (DAYS + 2) * 24),
       offset_ms=st.integers(0, 3_599_999), by=st.sampled_from(["hour", "day"]),
       pick=st.integers(0, 10_000), q=st.one_of(st.just(""), st.text("0123456789abcdef-", max_size=3)),
       stranger=st.booleans())
def test_every_view_answers_as_a_whole_read(readers, lake, tenant, start_h, hours, offset_ms, by, pick, q, stranger):
    ids = known_ids(readers["local"])
    who = "no-such-person" if stranger else ids[pick % len(ids)]
    start = START_MS + start_h * 3_600_000 + offset_ms
    end = start + hours * 3_600_000
    whole = answers(readers["whole"], lake, tenant, start, end, by, q, who)
    assert answers(readers["local"], lake, tenant, start, end, by, q, who) == whole
    assert answers(readers["remote"], lake, tenant, start, end, by, q, who) == whole


def _days(t: Tables, table: str, tenant: str) -> dict[str, set[date]]:
    """Every data file of ``table`` of ``tenant``, by path, with its partition day."""
    handle = t.table(table)
    return {task.file.file_path: EPOCH + timedelta(days=task.file.partition[1])
            for task in handle.scan().plan_files() if task.file.partition[0] == tenant}


@pytest.mark.parametrize("where", ["local", "remote"])
def test_a_range_reads_only_the_files_of_its_days(readers, lake, where, monkeypatch):
    """Traffic over two days of a twelve-day table: the page views of those days, the sessions of
    those days and the one before (a session started up to max_session_hours earlier may hold a
    page view of the range); counted by what the planner hands out and by what the reader opens."""
    from pyiceberg.io.pyarrow import PyArrowFileIO

    t = Tables(lake, store=readers[where].store) if where == "remote" else readers[where]  # nothing kept yet
    opened: list[str] = []
    real = PyArrowFileIO.new_input
    monkeypatch.setattr(PyArrowFileIO, "new_input",
                        lambda self, location: opened.append(location) or real(self, location))
    start = START_MS + 5 * DAY_MS
    out = traffic.traffic(t, "shop", start, start + 2 * DAY_MS, "day", 24)
    assert out["totals"]["sessions"] > 0
    stats = t.last_stats
    day0 = EPOCH + timedelta(days=start // DAY_MS)
    pageview_days = _days(t, "pageviews", "shop")
    session_days = _days(t, "sessions", "shop")
    assert len(set(pageview_days.values())) >= DAYS  # a table with many days...
    want_pageviews = {p for p, d in pageview_days.items() if day0 <= d < day0 + timedelta(days=2)}
    want_sessions = {p for p, d in session_days.items() if day0 - timedelta(days=1) <= d < day0 + timedelta(days=2)}
    assert set(stats.paths["pageviews"]) == want_pageviews and len(want_pageviews) == 2
    assert set(stats.paths["sessions"]) == want_sessions and len(want_sessions) == 3
    data_files = {p for p in opened if p.endswith(".parquet")}
    if where == "remote":  # pyiceberg's reader opened exactly the planned files...
        assert data_files == want_pageviews | want_sessions
        opened.clear()  # ...and keeps their columns: the same view again opens none
        assert traffic.traffic(t, "shop", start, start + 2 * DAY_MS, "day", 24) == out
        assert {p for p in opened if p.endswith(".parquet")} == set()
    else:  # DuckDB read them in place: nothing went through the FileIO
        assert data_files == set()


def test_a_person_reads_the_days_of_their_sessions(readers):
    t = readers["local"]
    who = people.search(t, "shop", "", 1)["people"][0]["person_id"]
    one = people.person(t, "shop", who, 10)
    days = {(s["start"] // DAY_MS) for s in one["sessions"]} | {(s["end"] // DAY_MS) for s in one["sessions"]}
    pageview_days = _days(t, "pageviews", "shop")
    planned = {pageview_days[p] for p in t.last_stats.paths["pageviews"]}
    assert planned <= {EPOCH + timedelta(days=d) for d in range(min(days), max(days) + 1)}
    assert len(t.last_stats.paths["pageviews"]) < len(pageview_days)


def test_a_read_names_a_known_table_and_columns():
    with pytest.raises(ValueError, match="no table 'visits'"):
        Read("visits", ("tenant",), "shop")
    with pytest.raises(ValueError, match="sessions has no column"):
        Read("sessions", ("tenant", "nope"), "shop")
    with pytest.raises(ValueError, match="not partitioned by day"):
        Read("identities", ("tenant",), "shop", 0, 1)


@pytest.mark.parametrize("where", ["local", "remote"])
def test_a_range_that_starts_inside_sessions(readers, lake, where):
    """Page views of the range whose session started before it still count (the planned read
    takes the sessions of max_session_hours before the range): the same figures as a whole read."""
    with readers["whole"].view() as v:
        v.read(Read("pageviews", ("tenant", "view_ts", "view_index", "session_id"), "shop"))
        v.read(Read("sessions", ("tenant", "session_id", "is_bot"), "shop"))
        later = v.query("SELECT epoch_ms(view_ts) AS ts FROM pageviews JOIN sessions USING (session_id) "
                        "WHERE pageviews.tenant = 'shop' AND view_index > 1 AND NOT is_bot ORDER BY view_ts")
    assert later
    for ts in [later[len(later) // 3]["ts"], later[2 * len(later) // 3]["ts"]]:
        whole = traffic.traffic(readers["whole"], "shop", ts, ts + 3_600_000, "hour", 24)
        assert whole["scroll_depth"]  # the page view at ts, whose session began before it
        assert traffic.traffic(readers[where], "shop", ts, ts + 3_600_000, "hour", 24) == whole


def test_a_commit_is_seen_by_the_next_view(readers, lake):
    """Kept plans and file columns never hide a commit: a delete of one day of the remote tables
    shows in the next view of every reader of that catalog (last in this module: it changes the
    remote copy)."""
    from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan

    from beaconlake.convert.catalog import iso_ms

    remote = readers["remote"]
    fresh = Tables(lake, store=remote.store)  # another worker, nothing kept
    day = START_MS + 4 * DAY_MS
    before = traffic.traffic(remote, "other", day, day + DAY_MS, "day", 24)["totals"]["sessions"]
    assert before > 0
    remote.store.table("sessions").delete(And(EqualTo("tenant", "other"), And(
        GreaterThanOrEqual("start_ts", iso_ms(day)), LessThan("start_ts", iso_ms(day + DAY_MS)))))
    assert traffic.traffic(remote, "other", day, day + DAY_MS, "day", 24)["totals"]["sessions"] == 0
    assert traffic.traffic(fresh, "other", day, day + DAY_MS, "day", 24)["totals"]["sessions"] == 0
    assert traffic.traffic(remote, "other", day - DAY_MS, day + 2 * DAY_MS, "day", 24) == \
        traffic.traffic(WholeTables(lake, store=remote.store), "other", day - DAY_MS, day + 2 * DAY_MS, "day", 24)


def test_an_unreachable_warehouse_is_a_clear_503(lake, readers):
    """The object store behind a remote catalog is down: the view says which and why (the route
    answers 503 with Retry-After), rather than failing with a traceback."""
    from pyiceberg.catalog.sql import SqlCatalog

    from beaconlake.convert.catalog import TableStore
    from beaconlake.errors import BackendUnavailable
    from support import free_port

    store = readers["remote"].store
    props = {**store.catalog.properties, "s3.endpoint": f"http://127.0.0.1:{free_port()}", "s3.connect-timeout": "1",
             "s3.request-timeout": "1"}
    down = Tables(lake, store=TableStore(SqlCatalog("beaconlake", **props), "beaconlake"))
    with pytest.raises(BackendUnavailable, match="the Iceberg catalog cannot be reached to read the sessions table"):
        traffic.traffic(down, "shop", START_MS, START_MS + DAY_MS, "day", 24)
