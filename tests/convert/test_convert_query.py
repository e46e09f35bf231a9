"""``beaconlake query``: SQL over the tables with DuckDB; tables by name; table, CSV or JSON output."""

from __future__ import annotations

import csv
import io
import json

import pytest
from convert_lake import Lake
from rawlake import MIN, event, ms, write_raw

from beaconlake.convert.errors import QueryError
from beaconlake.convert.query import run_query, write


@pytest.fixture(scope="module")
def lake(tmp_path_factory, scratch):
    lake = Lake(tmp_path_factory.mktemp("query"), "duckdb", scratch)
    t = ms("2026-03-10T10:00:00")
    write_raw(lake.lake, [event("a", t), event("a", t + MIN, "click", "low"), event("b", t + 5 * MIN, user_id="u1")])
    lake.convert()
    return lake


def query(lake, sql):
    return run_query(lake.store(), sql, str(lake.root))


def test_tables_are_available_by_name(lake):
    rows = query(lake, "SELECT anonymous_id, events FROM sessions ORDER BY anonymous_id").to_pylist()
    assert rows == [{"anonymous_id": "a", "events": 2}, {"anonymous_id": "b", "events": 1}]
    joined = query(lake, """SELECT count(*) AS n FROM events e JOIN sessions s USING (session_id)
                            JOIN identities i ON i.anonymous_id = e.anonymous_id""").to_pylist()
    assert joined == [{"n": 1}]
    assert query(lake, "SELECT count(*) AS n FROM high_level_events").to_pylist() == [{"n": 0}]


def test_bad_sql_says_it_does_not_parse(lake):
    with pytest.raises(QueryError, match="does not parse"):
        query(lake, "SELEC * FROM events")


def test_an_unknown_table_lists_the_tables(lake):
    with pytest.raises(QueryError, match=r"sesions.*the tables are: converted_files, events, high_level_events"):
        query(lake, "SELECT * FROM sesions")


def test_a_failing_query_says_why(lake):
    with pytest.raises(QueryError, match="the query failed"):
        query(lake, "SELECT CAST(anonymous_id AS INTEGER) FROM sessions")


def test_output_formats(lake):
    result = query(lake, "SELECT anonymous_id, start_ts, page_views FROM sessions ORDER BY anonymous_id")
    out = io.StringIO()
    write(result, "csv", out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0] == {"anonymous_id": "a", "start_ts": "2026-03-10T10:00:00+00:00", "page_views": "1"}
    out = io.StringIO()
    write(result, "json", out)
    assert json.loads(out.getvalue())[1] == {"anonymous_id": "b", "start_ts": "2026-03-10T10:05:00+00:00", "page_views": 1}
    out = io.StringIO()
    write(result, "table", out)
    lines = out.getvalue().splitlines()
    assert lines[0].split(" | ") == ["anonymous_id", "start_ts                 ", "page_views"]
    assert lines[-1] == "(2 rows)" and len(lines) == 5


def test_only_the_tables_the_sql_names_are_opened(lake, monkeypatch):
    """A query of one table never reads the others (in a remote warehouse, each opened table is
    fetched); a statement that names none (SHOW TABLES) still sees them all."""
    from beaconlake.convert.catalog import TableStore

    opened: list[str] = []
    real = TableStore.register
    monkeypatch.setattr(TableStore, "register", lambda self, engine, name: opened.append(name) or real(self, engine, name))
    assert query(lake, "WITH s AS (SELECT * FROM sessions) SELECT count(*) AS n FROM s").to_pylist() == [{"n": 2}]
    assert opened == ["sessions"]
    opened.clear()
    names = {r["name"] for r in query(lake, "SHOW TABLES").to_pylist()}
    assert {"events", "sessions", "pageviews", "identities"} <= names and sorted(opened) == sorted(names)
