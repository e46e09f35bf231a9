"""DuckDB engine: the embedded default. One in-process connection; spills to disk above its memory limit."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa

from beaconlake.backends.engine.base import Capabilities, Dialect, Engine, Part
from beaconlake.backends.engine.settings import DuckDBEngineSettings

_TYPES = {
    pa.string(): "STRING",
    pa.large_string(): "STRING",
    pa.int64(): "BIGINT",
    pa.int32(): "INT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.date32(): "DATE",
}


# The optimizers that reorder joins and swap their build and probe sides, off for the writes.
WRITE_DISABLED_OPTIMIZERS = "join_order,build_side_probe_side"
# Files whose Parquet schema an engine remembers (a long-lived one, the dashboard's, forgets them all past it).
SHAPES_KEPT = 100_000


def sql_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    if (pa.types.is_list(t) or pa.types.is_large_list(t)):
        return f"{sql_type(t.value_type)}[]"
    try:
        return _TYPES[t]
    except KeyError:
        raise TypeError(f"no DuckDB type for Arrow {t}") from None


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckDBDialect(Dialect):
    def hash64(self, value: str) -> str:
        return f"hash({value})"

    def timestamp_ms(self, ms: str) -> str:
        return f"make_timestamptz(({ms}) * 1000)"

    def epoch_ms(self, ts: str) -> str:
        return f"epoch_ms({ts})"

    def date_ms(self, ms: str) -> str:
        # the connection's TimeZone is UTC, so this is the UTC date
        return f"CAST(make_timestamptz(({ms}) * 1000) AS DATE)"

    def json_text(self, doc: str, key: str) -> str:
        return f"json_extract_string({doc}, '$.{key}')"

    def json_text_list(self, doc: str, key: str) -> str:
        # '$.k[*]' gives [] for a missing key; NULL keeps "absent" apart from "empty"
        absent = f"json_extract({doc}, '$.{key}') IS NULL"
        return f"CASE WHEN {absent} THEN NULL ELSE json_extract_string({doc}, '$.{key}[*]') END"

    def last_ignore_nulls(self, expr: str) -> str:
        return f"last_value({expr} IGNORE NULLS)"

    def min_by(self, value: str, key: str) -> str:
        return f"arg_min_null({value}, {key})"  # arg_min skips NULL values; Spark's min_by does not

    def max_by(self, value: str, key: str) -> str:
        return f"arg_max_null({value}, {key})"

    def matches(self, text: str, pattern: str) -> str:
        return f"regexp_matches({text}, {pattern})"

    def url_decode(self, text: str) -> str:
        return f"url_decode({text})"

    def hex_bigint(self, text: str) -> str:
        return f"CAST('0x' || ({text}) AS BIGINT)"


class DuckDBEngine(Engine):
    name = "duckdb"
    capabilities = Capabilities(in_process=True)

    def __init__(self, settings: DuckDBEngineSettings, data_dir: str) -> None:
        self.dialect = DuckDBDialect()
        temp_dir = Path(data_dir) / (settings.temp_dir or "run/duckdb-tmp")  # relative: under data_dir
        temp_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "memory_limit": f"{settings.memory_limit_mb}MB",
            "temp_directory": str(temp_dir),
            # Output order carries no meaning here; dropping it lets DuckDB stream and spill freely.
            "preserve_insertion_order": False,
        }
        if settings.threads:
            config["threads"] = settings.threads
        self.con = duckdb.connect(":memory:", config=config)
        # Dates of timestamps are UTC dates, whatever the machine's zone (set once ICU is loaded).
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET enable_progress_bar = false")  # it draws on stdout; convert has its own
        # a batch reads the same raw files more than once (each day's events are joined back)
        self.con.execute("SET parquet_metadata_cache = true")
        self._arrow: dict[str, pa.Table] = {}  # keeps registered Arrow tables alive
        self._kinds: dict[str, str] = {}  # name -> "VIEW" / "TABLE" / "ARROW"
        # (path, size, mtime) -> the number of the file's Parquet schema: files share a few schemas,
        # each kept once (a schema is a few kB of strings; a backfill reads 100,000 files)
        self._shapes: dict[tuple[str, int, int], int] = {}
        self._schema_ids: dict[tuple, int] = {}

    def read_parquet(self, view: str, paths: list[str], schema: pa.Schema, key_offset: int | None = None) -> None:
        if not paths:
            empty = schema.empty_table()
            if key_offset is not None:
                empty = empty.append_column("_row_key", pa.array([], pa.int64()))
            self.register_arrow(view, empty)
            return
        self.drop(view)
        files = "[" + ", ".join(literal(p) for p in paths) + "]"
        # Files of one schema (the usual case) are bound from the first file. union_by_name, for
        # files that differ, makes a column missing from some read as NULL there, but reads every
        # footer again each time a query binds the view: a fifth of a convert of many small files.
        same = self._one_schema(paths)
        options = "hive_partitioning = false" + ("" if same else ", union_by_name = true")
        first = f"read_parquet([{literal(paths[0])}], {options})" if same else None
        if key_offset is not None:
            options += ", file_row_number = true"
        source = f"read_parquet({files}, {options})"
        # a column missing from every file is not in the union at all, so it is spelled as NULL here
        present = {row[0] for row in self.con.execute(f"DESCRIBE SELECT * FROM {first or source}").fetchall()}
        cols = [
            f"CAST({quote(f.name) if f.name in present else 'NULL'} AS {sql_type(f.type)}) AS {quote(f.name)}"
            for f in schema
        ]
        if key_offset is not None:
            cols.append(f"((file_index + {key_offset})::BIGINT << 32) | file_row_number::BIGINT AS _row_key")
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(view)} AS SELECT {', '.join(cols)} FROM {source}")
        self._kinds[view] = "VIEW"

    def _one_schema(self, paths: list[str]) -> bool:
        """Whether every file has the same Parquet schema (names, types, order). Each file's is read
        once per engine (one ``parquet_schema`` call for those not seen yet) and kept by path, size
        and modification time; a path that cannot be statted (not local) counts as different."""
        if len(set(paths)) == 1:
            return True  # nothing to differ from (an incremental run's new file): no schema read
        keys = []
        for path in paths:
            try:
                st = os.stat(path)
            except (OSError, ValueError):
                return False
            keys.append((path, st.st_size, st.st_mtime_ns))
        unseen = [k for k in keys if k not in self._shapes]
        if unseen and len(self._shapes) + len(unseen) > SHAPES_KEPT:
            self._shapes.clear()
            self._schema_ids.clear()
            unseen = list(dict.fromkeys(keys))
        if unseen:
            files = "[" + ", ".join(literal(k[0]) for k in unseen) + "]"
            rows = self.con.execute(
                "SELECT file_name, list((name, duckdb_type, repetition_type) ORDER BY column_id) "
                f"FROM parquet_schema({files}) GROUP BY file_name").fetchall()
            found = {name: tuple(map(tuple, shape)) for name, shape in rows}
            for k in unseen:  # a file DuckDB named otherwise is taken as unlike every other
                shape = found.get(k[0]) or (k,)
                self._shapes[k] = self._schema_ids.setdefault(shape, len(self._schema_ids))
        return len({self._shapes[k] for k in keys}) == 1

    def register_arrow(self, view: str, table: pa.Table) -> None:
        self.drop(view)
        self._arrow[view] = table
        self.con.register(view, table)
        self._kinds[view] = "ARROW"

    def materialize(self, name: str, sql: str) -> int:
        self.drop(name)
        self.con.execute(f"CREATE TEMP TABLE {quote(name)} AS {sql}")
        self._kinds[name] = "TABLE"
        return self.con.execute(f"SELECT count(*) FROM {quote(name)}").fetchall()[0][0]

    def query(self, sql: str) -> pa.Table:
        return self.con.sql(sql).to_arrow_table()

    def write_parquet(
        self, sql: str, folder: str, partition_by: list[str], target_file_mb: int, parts: list[Part] | None = None,
        bucket: str | None = None,
    ) -> list[str]:
        # A partitioned COPY buffers the whole result by partition first and is about twice as slow
        # as a plain COPY per partition, which also keeps a single file open at a time.
        options = [
            "FORMAT parquet",
            "COMPRESSION zstd",
            "COMPRESSION_LEVEL 1",  # the cost is in the encoding, not zstd; level 1 gives the same size here
            # dictionaries for columns of up to 1000 distinct values per row group (level, name, ua_*...);
            # trying one for ids and JSON only to drop it costs 15% of the write
            "DICTIONARY_SIZE_LIMIT 1000",
            f"FILE_SIZE_BYTES '{target_file_mb}MB'",
            "RETURN_FILES true",
        ]
        if parts is None:
            if bucket is not None:
                raise ValueError("a bucket column needs parts: DuckDB writes each partition on its own")
            options += [f"PARTITION_BY ({', '.join(quote(c) for c in partition_by)})", "WRITE_PARTITION_COLUMNS true",
                        "OVERWRITE_OR_IGNORE true"]
            jobs = [(Path(folder), sql)]
        else:
            if bucket is not None:  # bucket=<id> folders in each partition's; the column stays out of the files
                options.append(f"PARTITION_BY ({quote(bucket)})")
            jobs = [
                (Path(folder, *(f"{c}={v}" for c, v in zip(partition_by, values, strict=True)), uuid.uuid4().hex), query)
                for values, query in parts
            ]
        written: list[str] = []
        # Joins run as written: the convert stage's output queries put the wide raw rows first (the
        # probe side, streamed in file order) and the narrow keys last (the hash table). Left to its
        # estimates, DuckDB often builds the hash table from the wide side instead: every string is
        # copied into it and gathered back out in the narrow side's order, which takes longer and,
        # scattered, compresses worse (events files 3-15% larger on bench/convert's lake).
        self.con.execute(f"SET disabled_optimizers = {literal(WRITE_DISABLED_OPTIMIZERS)}")
        try:
            for target, query in jobs:
                target.parent.mkdir(parents=True, exist_ok=True)
                pattern = f"FILENAME_PATTERN '{uuid.uuid4().hex}-{{i}}'"
                copy = f"COPY ({query}) TO {literal(str(target))} ({', '.join([*options, pattern])})"
                rows = self.con.execute(copy).fetchall()
                written += rows[0][1] if rows and len(rows[0]) > 1 and rows[0][1] else []
        finally:
            self.con.execute("RESET disabled_optimizers")
        return sorted(os.path.abspath(f) for f in written)

    def drop(self, *names: str) -> None:
        for name in names:
            kind = self._kinds.pop(name, None)
            if kind == "ARROW":
                self.con.unregister(name)
                del self._arrow[name]
            elif kind is not None:
                self.con.execute(f"DROP {kind} IF EXISTS {quote(name)}")

    def close(self) -> None:
        self.con.close()
