"""Engines for tests: DuckDB, and Spark in local[2] mode on one SparkSession shared by every test
(starting one costs seconds; ``SparkSession.builder.getOrCreate`` hands back the running one)."""

from __future__ import annotations

from pathlib import Path

from beaconlake.backends.engine import open_engine
from beaconlake.backends.engine.settings import DuckDBEngineSettings, SparkEngineSettings

ENGINES = ("duckdb", "spark")

# Whole-stage code generation compiles Java per query: worth it on big data, seconds lost on tiny
# test inputs. The results do not depend on it.
SPARK_TEST = SparkEngineSettings(
    master="local[2]", driver_memory_mb=1024, shuffle_partitions=1,
    conf={"spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"},
)
DUCKDB_TEST = DuckDBEngineSettings(threads=2, memory_limit_mb=1024)


def settings_for(kind: str):
    return DUCKDB_TEST if kind == "duckdb" else SPARK_TEST


def spark_session(scratch: Path):
    from beaconlake.backends.engine.spark import start_session

    return start_session(SPARK_TEST, str(scratch))


def make_engine(kind: str, data_dir: Path, scratch: Path):
    """An open engine; Spark's runs on the shared session (closing it leaves the session up)."""
    if kind == "spark":
        return open_engine(SPARK_TEST, str(data_dir), session=spark_session(scratch))
    return open_engine(DUCKDB_TEST, str(data_dir))
