"""Spark engine: the scale-out engine (``pip install 'beaconlake[spark]'``, Java 17).

Spark writes plain Parquet; the convert stage commits the files to Iceberg itself (pyiceberg
``add_files``), so no Iceberg runtime jar is needed on the cluster. ``local[N]`` runs Spark inside
this process, which is how the tests run it.

On a cluster the executors, not the driver, read and write files, so paths must mean the same
on every machine: Spark reads and writes URIs (``file://`` on a shared mount, ``s3a://`` where
the cluster has Hadoop's S3A, as EMR and Dataproc do), never driver-local copies. ``s3://`` URIs
(the lake's and pyiceberg's spelling) are handed to Spark as ``s3a://`` and come back as ``s3://``.
With an S3 ``[storage]`` section, S3A gets its endpoint, region, keys and addressing from it
(``s3a_conf``); ``engine.conf`` wins over them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from beaconlake.backends.engine.base import Capabilities, Dialect, Engine, Part
from beaconlake.backends.engine.settings import SparkEngineSettings

# Session-wide settings the convert stage relies on; set on every engine, even on a shared session.
RUNTIME_CONF = {
    "spark.sql.session.timeZone": "UTC",
    # Iceberg stores timestamps as int64 microseconds; Spark's default is the legacy INT96.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.sql.sources.partitionOverwriteMode": "static",
}
# Rows per file are capped from this guess of a row's compressed size, since Spark cannot roll
# files over by bytes.
BYTES_PER_ROW_GUESS = 64


def spark_type(t: pa.DataType) -> T.DataType:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return T.StringType()
    if pa.types.is_int64(t):
        return T.LongType()
    if pa.types.is_int32(t):
        return T.IntegerType()
    if pa.types.is_float64(t):
        return T.DoubleType()
    if pa.types.is_boolean(t):
        return T.BooleanType()
    if pa.types.is_date32(t):
        return T.DateType()
    if pa.types.is_timestamp(t):
        return T.TimestampType()
    if (pa.types.is_list(t) or pa.types.is_large_list(t)):
        return T.ArrayType(spark_type(t.value_type), True)
    raise TypeError(f"no Spark type for Arrow {t}")


def spark_schema(schema: pa.Schema) -> T.StructType:
    return T.StructType([T.StructField(f.name, spark_type(f.type), True) for f in schema])


def _file_key(path: str) -> str:
    """How a file given to ``read_parquet`` is matched with ``_metadata.file_path``: a local file
    by its absolute path, any other by its URI as Spark has it (``s3a://``)."""
    if "://" not in path:
        return os.path.abspath(path)
    if path.startswith("file:"):
        return unquote(urlparse(path).path)
    return spark_uri(path)


class SparkDialect(Dialect):
    def hash64(self, value: str) -> str:
        return f"xxhash64({value})"

    def timestamp_ms(self, ms: str) -> str:
        return f"timestamp_millis({ms})"

    def epoch_ms(self, ts: str) -> str:
        return f"unix_millis({ts})"

    def date_ms(self, ms: str) -> str:
        return f"to_date(timestamp_millis({ms}))"  # the session time zone is UTC

    def json_text(self, doc: str, key: str) -> str:
        return f"get_json_object({doc}, '$.{key}')"

    def json_text_list(self, doc: str, key: str) -> str:
        return f"from_json(get_json_object({doc}, '$.{key}'), 'array<string>')"

    def last_ignore_nulls(self, expr: str) -> str:
        return f"last_value({expr}, true)"

    def min_by(self, value: str, key: str) -> str:
        return f"min_by({value}, {key})"

    def max_by(self, value: str, key: str) -> str:
        return f"max_by({value}, {key})"

    def matches(self, text: str, pattern: str) -> str:
        return f"({text}) RLIKE {pattern}"

    def url_decode(self, text: str) -> str:
        return f"url_decode({text})"

    def hex_bigint(self, text: str) -> str:
        return f"CAST(conv({text}, 16, 10) AS BIGINT)"


# Hadoop's name for an object store URI, by the name the lake and pyiceberg use.
HADOOP_SCHEMES = {"s3": "s3a", "s3n": "s3a"}
S3A_CLASS = "org.apache.hadoop.fs.s3a.S3AFileSystem"


def s3a_conf(storage: Any) -> dict[str, str]:
    """Spark properties that point Hadoop's S3A at the S3 store of ``storage`` (an S3 ``[storage]``
    section; {} for others). Needs hadoop-aws and its AWS SDK on the classpath (EMR, Dataproc
    and most cluster images have them; ``spark.jars.packages`` adds them)."""
    if getattr(storage, "bucket", None) is None or not hasattr(storage, "path_style"):
        return {}
    conf = {
        "spark.hadoop.fs.s3a.endpoint.region": storage.region,
        "spark.hadoop.fs.s3a.path.style.access": "true" if storage.path_style else "false",
        "spark.hadoop.fs.s3a.connection.timeout": str(int(storage.timeout_secs * 1000)),
    }
    if storage.endpoint_url:
        conf["spark.hadoop.fs.s3a.endpoint"] = storage.endpoint_url
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(storage.endpoint_url.startswith("https://")).lower()
    if storage.access_key_id and storage.secret_access_key:
        conf["spark.hadoop.fs.s3a.access.key"] = storage.access_key_id
        conf["spark.hadoop.fs.s3a.secret.key"] = storage.secret_access_key
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = \
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
    return conf


def spark_uri(path: str) -> str:
    """What Spark is given for a path or URI: a local path as it is, a ``file://`` URI as its
    (decoded) path (Hadoop would take ``%20`` literally), ``s3://`` as ``s3a://``."""
    scheme, sep, rest = path.partition("://")
    if not sep:
        return path
    if scheme == "file":
        return unquote(urlparse(path).path)
    return f"{HADOOP_SCHEMES.get(scheme, scheme)}://{rest}"


def start_session(settings: SparkEngineSettings, data_dir: str, storage: Any = None) -> SparkSession:
    builder = (
        SparkSession.builder.master(settings.master)
        .appName("beaconlake-convert")
        .config("spark.driver.memory", f"{settings.driver_memory_mb}m")
        .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.local.dir", str(Path(data_dir) / "run" / "spark-tmp"))
        .config("spark.sql.adaptive.enabled", "true")
    )
    for key, value in {**s3a_conf(storage), **settings.conf}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


class SparkEngine(Engine):
    name = "spark"
    capabilities = Capabilities(in_process=False)

    def __init__(self, settings: SparkEngineSettings, data_dir: str, session: SparkSession | None = None,
                 storage: Any = None) -> None:
        self.dialect = SparkDialect()
        self._owned = session is None  # a session handed in (tests share one) is not ours to stop
        self.spark = session or start_session(settings, data_dir, storage)
        for key, value in RUNTIME_CONF.items():
            self.spark.conf.set(key, value)
        self._s3a: bool | None = None  # whether Hadoop's S3A is on the classpath, once asked
        self._cached: dict[str, list[int]] = {}  # materialized name -> ids of its checkpointed RDDs
        self._views: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Any, data_dir: str, storage: Any = None, **kwargs: Any) -> SparkEngine:
        return cls(settings, data_dir, storage=storage, **kwargs)

    def reaches(self, uri: str) -> bool:
        scheme = uri.partition("://")[0] if "://" in uri else "file"
        if scheme == "file":
            return True
        if HADOOP_SCHEMES.get(scheme, scheme) != "s3a":
            return False
        if self._s3a is None:
            try:  # hadoop-aws on the classpath: the driver's is the cluster's image
                self.spark._jvm.java.lang.Class.forName(S3A_CLASS)
                self._s3a = True
            except Exception:  # py4j raises Py4JJavaError (ClassNotFoundException) through the gateway
                self._s3a = False
        return self._s3a

    def _view(self, name: str, df: DataFrame) -> None:
        df.createOrReplaceTempView(name)
        self._views.add(name)

    def read_parquet(self, view: str, paths: list[str], schema: pa.Schema, key_offset: int | None = None) -> None:
        self.drop(view)
        struct = spark_schema(schema)
        if key_offset is not None:
            struct = struct.add("_row_key", T.LongType(), True)
        if not paths:
            self._view(view, self.spark.createDataFrame([], struct))
            return
        # recursiveFileLookup turns off partition discovery: tenant=/day= folders are not columns.
        df = self.spark.read.schema(spark_schema(schema)).option("recursiveFileLookup", "true").parquet(
            *[spark_uri(p) for p in paths])
        if key_offset is not None:
            df = self._with_row_key(df, paths, key_offset)
        self._view(view, df)

    def _with_row_key(self, df: DataFrame, paths: list[str], key_offset: int) -> DataFrame:
        from pyspark.sql import functions as F

        numbers = self.spark.createDataFrame(
            [(_file_key(p), key_offset + i) for i, p in enumerate(paths)], "_path STRING, _file_no BIGINT"
        )
        # _metadata.file_path is a URI (file:/..., s3a://..., percent-encoded); a local file's is made
        # a plain absolute path, as _file_key makes the paths given
        columns = df.columns
        uri = F.regexp_replace(F.col("_metadata.file_path"), "^file:(//)?", "")
        df = df.withColumn("_p", uri).withColumn("_row_no", F.col("_metadata.row_index"))
        df = df.withColumn("_path", F.expr("try_url_decode(replace(_p, '+', '%2B'))"))
        joined = df.join(F.broadcast(numbers), "_path", "left")
        key = F.shiftleft(F.col("_file_no"), 32).bitwiseOR(F.col("_row_no")).alias("_row_key")
        return joined.select(*[F.col(c) for c in columns], key)

    def register_arrow(self, view: str, table: pa.Table) -> None:
        self.drop(view)
        if table.num_rows == 0:
            df = self.spark.createDataFrame([], spark_schema(table.schema))
        else:
            df = self.spark.createDataFrame(table)
        self._view(view, df)

    def materialize(self, name: str, sql: str) -> int:
        # A local checkpoint, not a cache: it cuts the lineage, so later queries are planned on a
        # small scan instead of the whole history, and dropping an input does not make Spark
        # recompute what was built from it.
        before = set(self._persisted())
        df = self.spark.sql(sql).localCheckpoint(eager=True)
        rows = df.count()
        self.drop(name)
        # unpersist() does not release a local checkpoint's blocks: remember its RDDs to free them
        self._cached[name] = [i for i in self._persisted() if i not in before]
        self._view(name, df)
        return rows

    def _persisted_map(self):
        return self.spark.sparkContext._jsc.getPersistentRDDs()

    def _persisted(self) -> list[int]:
        return list(self.spark.sparkContext._jsc.getPersistentRDDs().keySet())

    def query(self, sql: str) -> pa.Table:
        return self.spark.sql(sql).toArrow()

    def write_parquet(
        self, sql: str, folder: str, partition_by: list[str], target_file_mb: int, parts: list[Part] | None = None,
        bucket: str | None = None,
    ) -> list[str]:
        # The whole result in one job (``parts`` ignored): Spark shuffles by partition anyway, and
        # its per-job overhead is what costs on small batches.
        df = self.spark.sql(sql)
        # Spark leaves partition columns out of the files, but Iceberg readers expect them inside:
        # partition on copies, so the real columns stay in the data.
        copies = [f"_part_{c}" for c in partition_by]
        for c, copy in zip(partition_by, copies, strict=True):
            df = df.withColumn(copy, df[c])
        name = uuid.uuid4().hex
        remote = "://" in folder
        out = f"{folder.rstrip('/')}/{name}" if remote else str(Path(folder) / name)
        # a bucket column is a partition column of its own: Spark leaves it out of the files
        folders = [*copies, bucket] if bucket else copies
        (
            df.repartition(*folders)  # one task, so one file, per partition value
            .write.partitionBy(*folders)
            .option("maxRecordsPerFile", max(1, target_file_mb * 1024 * 1024 // BYTES_PER_ROW_GUESS))
            .mode("errorifexists")
            .parquet(spark_uri(out))
        )
        if folder.startswith("file:"):  # a shared mount this machine sees too (Hadoop's would move .crc files)
            local = _file_key(folder)
            moved = self._rename_local(local, str(Path(local) / name))
            return [f"{folder.rstrip('/')}/{Path(p).relative_to(local).as_posix()}" for p in moved]
        return self._rename_uris(folder, out) if remote else self._rename_local(folder, out)

    def _rename_local(self, folder: str, out: str) -> list[str]:
        """Move the files to col=value folders, as the contract says (Spark named them _part_col=value)."""
        files = []
        for root, _dirs, names in os.walk(out):
            for n in names:
                if not n.endswith(".parquet"):
                    continue  # _SUCCESS, .crc
                rel = [seg.removeprefix("_part_") for seg in Path(root).relative_to(out).parts]
                dest = Path(folder, *rel, f"{Path(out).name}-{n}")
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(os.path.join(root, n), dest)
                files.append(str(dest.resolve()))
        shutil.rmtree(out, ignore_errors=True)
        return sorted(files)

    def _rename_uris(self, folder: str, out: str) -> list[str]:
        """The same through Hadoop's FileSystem, where the files are (S3A: a rename there is a
        server-side copy, no byte goes through the driver). Returns URIs in ``folder``'s scheme."""
        jvm = self.spark._jvm
        hadoop_path = jvm.org.apache.hadoop.fs.Path
        base = hadoop_path(spark_uri(out))
        fs = base.getFileSystem(self.spark._jsc.hadoopConfiguration())
        prefix = base.toString().rstrip("/") + "/"
        files = []
        found = fs.listFiles(base, True)
        while found.hasNext():
            src = found.next().getPath()
            text = src.toString()
            if not text.endswith(".parquet") or not text.startswith(prefix):
                continue
            rel = [seg.removeprefix("_part_") for seg in text[len(prefix):].split("/")]
            dest = f"{folder.rstrip('/')}/{'/'.join(rel[:-1])}/{Path(out).name}-{rel[-1]}"
            target = hadoop_path(spark_uri(dest))
            fs.mkdirs(target.getParent())
            if not fs.rename(src, target):
                raise OSError(f"Spark output {text}: could not move it to {dest}")
            files.append(dest)
        fs.delete(base, True)
        return sorted(files)

    def drop(self, *names: str) -> None:
        for name in names:
            if name in self._views:
                self.spark.catalog.dropTempView(name)
                self._views.discard(name)
            rdds = self._persisted_map() if name in self._cached else None
            for rdd_id in self._cached.pop(name, []):
                rdd = rdds.get(rdd_id)
                if rdd is not None:
                    rdd.unpersist(False)

    def close(self) -> None:
        self.drop(*list(self._views))
        if self._owned:
            self.spark.stop()
