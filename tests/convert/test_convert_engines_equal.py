"""DuckDB and Spark give the same tables, row for row, from the same raw input."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

KEYS = {
    "events": ("tenant", "event_id"),
    "sessions": ("tenant", "session_id"),
    "pageviews": ("tenant", "page_view_id"),
    "high_level_events": ("tenant", "event_id"),
    "identities": ("tenant", "anonymous_id"),
}


@pytest.mark.spark
@pytest.mark.parametrize("table", list(KEYS))
def test_both_engines_give_equal_tables(baked, table):
    pytest.importorskip("pyspark")
    duck, spark = baked("duckdb"), baked("spark")
    a, b = duck.rows(table, KEYS[table]), spark.rows(table, KEYS[table])
    assert len(a) > 0
    assert len(a) == len(b)
    for left, right in zip(a, b, strict=True):
        assert left == right, f"{table} {[left[k] for k in KEYS[table]]}: " + ", ".join(
            f"{k}: {left[k]!r} != {right[k]!r}" for k in left if left[k] != right.get(k)
        )


@pytest.mark.spark
def test_both_engines_write_the_same_schema_and_partitions(baked):
    pytest.importorskip("pyspark")
    duck, spark = baked("duckdb").store(), baked("spark").store()
    for name in KEYS:
        assert duck.table(name).schema() == spark.table(name).schema()
        parts = [sorted(tuple(t.file.partition) for t in s.table(name).scan().plan_files()) for s in (duck, spark)]
        assert parts[0] == parts[1]


@pytest.mark.spark
def test_both_engines_convert_the_small_delivery_incrementally_into_the_same_buckets(baked):
    pytest.importorskip("pyspark")
    from beaconlake.convert import buckets
    from beaconlake.convert.catalog import local_path

    layouts = []
    for lake in (baked("duckdb"), baked("spark")):
        assert lake.increment.incremental == 1 and lake.increment.new_files >= 1
        layout = {}
        for task in lake.store().table("events").scan().plan_files():
            kind = buckets.of_path(task.file.file_path)
            anons = pq.read_table(local_path(task.file.file_path), columns=["anonymous_id"]).column(0).to_pylist()
            if kind != buckets.DELTA:
                assert {buckets.bucket_id(a, buckets.split_id(kind)[0]) for a in anons} == {kind}
            layout.setdefault((task.file.partition[1], kind), set()).update(anons)
        layouts.append(layout)
    assert layouts[0] == layouts[1]
