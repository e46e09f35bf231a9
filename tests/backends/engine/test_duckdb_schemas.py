"""DuckDB reads files of one Parquet schema without ``union_by_name`` (whose footer reads at every
bind were a fifth of a convert of many small files), and still reads files that differ, or a file
rewritten with another schema, as the engine contract says: missing columns as NULL."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beaconlake.backends.engine import duckdb as duckdb_engine
from beaconlake.backends.engine.duckdb import DuckDBEngine
from beaconlake.backends.engine.settings import DuckDBEngineSettings

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("extra", pa.string())])
OPTIONAL = ("name", "extra", "junk")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    e = DuckDBEngine(DuckDBEngineSettings(threads=1, memory_limit_mb=256), str(tmp_path_factory.mktemp("duckdb")))
    yield e
    e.close()


def view_sql(engine: DuckDBEngine, view: str) -> str:
    return engine.con.execute("SELECT sql FROM duckdb_views() WHERE view_name = ?", [view]).fetchall()[0][0]


def write(path, ids: list[int], columns: tuple[str, ...], id_type: pa.DataType) -> None:
    data = {"id": pa.array(ids, id_type)}
    for c in columns:
        data[c] = pa.array([f"{c}{i}" for i in ids], pa.string()) if c != "junk" else pa.array(ids, pa.int64())
    pq.write_table(pa.table(data), path)


files = st.lists(
    st.tuples(st.lists(st.sampled_from(OPTIONAL), unique=True).map(tuple), st.sampled_from([pa.int32(), pa.int64()]),
              st.integers(0, 3)),
    min_size=1, max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=files)
def test_any_mix_of_file_schemas_reads_each_row_with_missing_columns_as_null(engine, tmp_path_factory, shapes):
    folder = tmp_path_factory.mktemp("mix")
    paths, expected, next_id = [], [], 0
    for n, (columns, id_type, rows) in enumerate(shapes):
        ids = list(range(next_id, next_id + rows))
        next_id += rows
        paths.append(str(folder / f"{n}.parquet"))
        write(paths[-1], ids, columns, id_type)
        expected += [{"id": i, "name": f"name{i}" if "name" in columns else None,
                      "extra": f"extra{i}" if "extra" in columns else None, "_row_key": n << 32 | k}
                     for k, i in enumerate(ids)]
    engine.read_parquet("mix", paths, SCHEMA, key_offset=0)
    assert engine.query("SELECT * FROM mix ORDER BY id").to_pylist() == expected
    one_schema = len({(c, t) for c, t, _ in shapes}) == 1
    assert ("union_by_name" not in view_sql(engine, "mix")) == one_schema, (shapes, view_sql(engine, "mix"))


def test_a_file_rewritten_with_another_schema_is_read_as_it_is_now(engine, tmp_path):
    a, b = str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")
    write(a, [1], ("name",), pa.int64())
    write(b, [2], ("name",), pa.int64())
    engine.read_parquet("v", [a, b], SCHEMA)
    assert "union_by_name" not in view_sql(engine, "v")
    then = os.stat(b).st_mtime_ns
    write(b, [2, 3], ("extra",), pa.int64())
    os.utime(b, ns=(then, then))  # a copy that keeps the old time: its size still tells it apart
    engine.read_parquet("v", [a, b], SCHEMA)
    assert engine.query("SELECT * FROM v ORDER BY id").to_pylist() == [
        {"id": 1, "name": "name1", "extra": None}, {"id": 2, "name": None, "extra": "extra2"},
        {"id": 3, "name": None, "extra": "extra3"}]


def test_past_the_files_it_remembers_the_engine_forgets_them_and_reads_on(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(duckdb_engine, "SHAPES_KEPT", 3)
    paths = [str(tmp_path / f"{i}.parquet") for i in range(5)]
    for i, p in enumerate(paths):
        write(p, [i], ("name",) if i != 4 else ("extra",), pa.int64())
    for first, last in ((0, 2), (1, 3), (0, 4), (2, 5), (0, 5)):  # each call over the limit with the ones before
        engine.read_parquet("v", paths[first:last], SCHEMA)
        assert [r["id"] for r in engine.query("SELECT id FROM v ORDER BY id").to_pylist()] == list(range(first, last))
        assert ("union_by_name" in view_sql(engine, "v")) == (last == 5)
