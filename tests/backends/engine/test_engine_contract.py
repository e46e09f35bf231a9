"""The engine contract, and the SQL dialect the convert stage relies on, on every engine."""

from __future__ import annotations

import datetime as dt
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beaconlake.backends.engine import LOADERS, open_engine
from beaconlake.backends.engine.settings import SparkEngineSettings
from beaconlake.errors import ConfigError

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("extra", pa.string())])


def no_such_table(engine) -> type[Exception]:
    if engine.name == "spark":
        from pyspark.errors import AnalysisException

        return AnalysisException
    import duckdb

    return duckdb.CatalogException


def write(path, table):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return str(path)


def test_read_parquet_exposes_the_schema_and_reads_missing_columns_as_null(engine, tmp_path):
    a = write(tmp_path / "in/day=1/a.parquet", pa.table({"id": pa.array([1, 2], pa.int32()), "name": ["x", "y"], "junk": [0, 0]}))
    b = write(tmp_path / "in/day=2/b.parquet", pa.table({"id": [3], "name": ["z"], "extra": ["e"]}))
    engine.read_parquet("v", [a, b], SCHEMA)
    rows = engine.query("SELECT * FROM v ORDER BY id").to_pylist()
    assert rows == [{"id": 1, "name": "x", "extra": None}, {"id": 2, "name": "y", "extra": None},
                    {"id": 3, "name": "z", "extra": "e"}]
    assert engine.query("SELECT * FROM v").schema.names == ["id", "name", "extra"]  # no day= column


def test_row_keys_number_files_from_the_offset_and_rows_within_them(engine, tmp_path):
    a = write(tmp_path / "a.parquet", pa.table({"id": [10, 11, 12], "name": ["a", "b", "c"]}))
    b = write(tmp_path / "b.parquet", pa.table({"id": [20], "name": ["d"]}))
    engine.read_parquet("all_files", [a, b], SCHEMA, key_offset=0)
    engine.read_parquet("second", [b], SCHEMA, key_offset=1)
    keys = {r["id"]: r["_row_key"] for r in engine.query("SELECT id, _row_key FROM all_files").to_pylist()}
    assert keys == {10: 0, 11: 1, 12: 2, 20: 1 << 32}
    joined = engine.query("SELECT s.id FROM second s JOIN all_files f ON f._row_key = s._row_key").to_pylist()
    assert joined == [{"id": 20}]


def test_no_files_is_an_empty_view(engine):
    engine.read_parquet("nothing", [], SCHEMA, key_offset=0)
    assert engine.query("SELECT count(*) AS n, max(_row_key) AS k FROM nothing").to_pylist() == [{"n": 0, "k": None}]


def test_materialize_keeps_a_result_and_drop_forgets_it(engine):
    engine.register_arrow("t", pa.table({"k": [1, 2, 3]}))
    assert engine.materialize("m", "SELECT k * 2 AS k2 FROM t WHERE k > 1") == 2
    engine.drop("t")  # the materialized result does not depend on its source any more
    assert sorted(r["k2"] for r in engine.query("SELECT k2 FROM m").to_pylist()) == [4, 6]
    engine.drop("m", "never-registered")
    with pytest.raises(no_such_table(engine)):
        engine.query("SELECT * FROM m")


@pytest.mark.parametrize("with_parts", [False, True])
def test_write_parquet_makes_one_folder_per_partition_with_the_columns_inside(engine, tmp_path, with_parts):
    engine.register_arrow("src", pa.table({
        "tenant": ["a", "a", "b"], "day": pa.array([dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 1)]),
        "v": [1, 2, 3],
    }))
    parts = [((t, d), f"SELECT * FROM src WHERE tenant = '{t}' AND day = DATE '{d}'") for t, d in
             [("a", "2026-03-01"), ("a", "2026-03-02"), ("b", "2026-03-01")]] if with_parts else None
    files = engine.write_parquet("SELECT * FROM src", str(tmp_path / "out"), ["tenant", "day"], 64, parts=parts)
    assert len(files) == 3 and all(os.path.isabs(f) and f.endswith(".parquet") for f in files)
    found = {}
    for f in files:
        t = pq.read_table(f)
        assert set(t.column_names) >= {"tenant", "day", "v"}
        assert pq.ParquetFile(f).metadata.row_group(0).column(0).compression == "ZSTD"
        found[(t.column("tenant")[0].as_py(), str(t.column("day")[0].as_py()))] = t.column("v").to_pylist()
        assert f"tenant={t.column('tenant')[0].as_py()}/day={t.column('day')[0].as_py()}/" in f
    assert found == {("a", "2026-03-01"): [1], ("a", "2026-03-02"): [2], ("b", "2026-03-01"): [3]}


def test_the_dialect_gives_the_same_answers_on_every_engine(engine):
    d = engine.dialect
    engine.register_arrow("j", pa.table({
        "doc": ['{"a": "x\\u00e9", "n": 12, "b": true, "l": ["p", "q"], "z": null}'],
        "ms": [1_772_409_599_999],  # 2026-03-01T23:59:59.999Z
    }))
    row = engine.query(f"""
        SELECT {d.json_text('doc', 'a')} AS a, {d.json_text('doc', 'n')} AS n, {d.json_text('doc', 'b')} AS b,
               {d.json_text('doc', 'missing')} AS missing, {d.json_text('doc', 'z')} AS z,
               {d.json_text_list('doc', 'l')} AS l, {d.json_text_list('doc', 'missing')} AS no_list,
               {d.timestamp_ms('ms')} AS ts, {d.date_ms('ms')} AS day, {d.epoch_ms(d.timestamp_ms('ms'))} AS back,
               {d.matches("'abc'", "'^a[b]c$'")} AS yes, {d.matches("'abc'", "'^b'")} AS no,
               {d.url_decode("'spring%20sale%2B'")} AS decoded, {d.hash64("'x'")} IS NOT NULL AS hashed
        FROM j""").to_pylist()[0]
    assert row["ts"] == dt.datetime(2026, 3, 1, 23, 59, 59, 999000, tzinfo=dt.UTC)
    del row["ts"]
    assert row == {"a": "xé", "n": "12", "b": "true", "missing": None, "z": None, "l": ["p", "q"], "no_list": None,
                   "day": dt.date(2026, 3, 1), "back": 1_772_409_599_999, "yes": True, "no": False,
                   "decoded": "spring sale+", "hashed": True}


def test_window_and_aggregate_spellings(engine):
    d = engine.dialect
    engine.register_arrow("w", pa.table({"g": ["a"] * 4, "o": [1, 2, 3, 4], "v": ["x", None, "y", None]}))
    rows = engine.query(f"""
        SELECT o, {d.last_ignore_nulls('v')} OVER (PARTITION BY g ORDER BY o) AS last_v FROM w ORDER BY o""").to_pylist()
    assert [r["last_v"] for r in rows] == ["x", "x", "y", "y"]
    agg = engine.query(f"""
        SELECT {d.min_by('v', 'o')} AS first_v, {d.max_by('v', 'o')} AS last_v,
               {d.min_by('v', "CASE WHEN o > 1 THEN o END")} AS second_v FROM w GROUP BY g""").to_pylist()[0]
    assert agg == {"first_v": "x", "last_v": None, "second_v": None}  # NULL values are not skipped


def test_an_engine_whose_package_is_missing_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(LOADERS, "spark", ("beaconlake.backends.engine.not_installed", "SparkEngine", "spark"))
    with pytest.raises(ConfigError, match=r"pip install 'beaconlake\[spark\]'"):
        open_engine(SparkEngineSettings(), str(tmp_path))
