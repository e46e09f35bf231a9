"""``[engine]``: what runs the convert and analyze stages' SQL. ``type`` picks the backend (``LOADERS``).

Limits are checked in ``__post_init__`` so a bad value is reported with the key, the value and
the limit ("engine.memory_limit_mb = 100: must be between 256 and 1048576 MB").
"""

from __future__ import annotations

from beaconlake.sections import Section, check_range, types_of


class DuckDBEngineSettings(Section, tag="duckdb", tag_field="type"):
    # 0 = DuckDB's default (every core).
    threads: int = 0
    # DuckDB spills sorts, windows and temporary tables to temp_dir above this.
    memory_limit_mb: int = 4096
    temp_dir: str = ""  # "" = <data_dir>/run/duckdb-tmp; a relative path is under data_dir

    def __post_init__(self) -> None:
        check_range("engine.threads", self.threads, 0, 1024, "threads")
        check_range("engine.memory_limit_mb", self.memory_limit_mb, 256, 1024 * 1024, "MB")


class SparkEngineSettings(Section, tag="spark", tag_field="type"):
    """PySpark (``pip install 'beaconlake[spark]'``, Java 17). ``local[N]`` runs in this process."""

    master: str = "local[2]"
    driver_memory_mb: int = 4096
    shuffle_partitions: int = 8
    # Extra Spark properties, e.g. {"spark.executor.memory" = "8g"} for a cluster.
    conf: dict[str, str] = {}

    def __post_init__(self) -> None:
        check_range("engine.driver_memory_mb", self.driver_memory_mb, 512, 1024 * 1024, "MB")
        check_range("engine.shuffle_partitions", self.shuffle_partitions, 1, 100_000, "partitions")
        if not self.master:
            raise ValueError("engine.master = '': give a Spark master URL, e.g. 'local[2]' or 'spark://host:7077'")


EngineSettings = DuckDBEngineSettings | SparkEngineSettings
# Each engine's settings class by its type, e.g. for `beaconlake convert --engine spark`.
ENGINE_TYPES = types_of(EngineSettings)
