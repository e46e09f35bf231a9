"""Planned reads of the convert tables: only the files and the columns a query needs.

A ``Read`` names a table, the columns wanted and a filter: a tenant, a range of the table's
partition timestamp (``TableDef.day_column``) and at most one group of ``column IN values``
alternatives. pyiceberg plans it over the current snapshot: the tables are partitioned by
tenant and day, so partition pruning drops every file of another tenant or day, and column
metrics drop files whose bounds rule the rest out. The planned files are then read in place by
DuckDB when they are local (it reads only the projected columns and row groups), otherwise by
pyiceberg's Arrow reader through the table's FileIO with the same projection and filter, so a
remote warehouse is never read whole either.

Both paths give exactly the rows of the table that pass the filter (the same filter is applied
to the rows, not only used to choose files), so a query over the loaded rows answers as it would
over the whole table with the filter in its WHERE clause.

What may be kept between reads (``Cache``) is only what cannot change: the plan of a read at one
snapshot, and the projected columns of a remote data file.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
from pyiceberg.expressions import (
    AlwaysFalse,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    LessThan,
    Or,
)
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.table import FileScanTask, Table

from beaconlake.backends.engine.duckdb import literal, quote, sql_type
from beaconlake.convert import tables
from beaconlake.convert.catalog import iso_ms, local_path

BY_NAME = {t.name: t for t in tables.ALL}
FETCH_THREADS = 8  # remote files fetched at once: object stores answer in parallel, one file is a few requests


@dataclass(frozen=True)
class Read:
    """What one query needs from one table. ``start_ms``/``end_ms``: the half-open range
    [start, end) of the table's day column (None: unbounded). ``any_of``: a row passes when one
    of these columns holds one of its values (empty: no such condition)."""

    table: str
    columns: tuple[str, ...]
    tenant: str
    start_ms: int | None = None
    end_ms: int | None = None
    any_of: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        tdef = BY_NAME.get(self.table)
        if tdef is None:
            raise ValueError(f"no table {self.table!r}; the tables are {', '.join(BY_NAME)}")
        known = {name for name, _type, _doc in tdef.columns}
        unknown = [c for c in (*self.columns, *(c for c, _ in self.any_of)) if c not in known]
        if unknown:
            raise ValueError(f"{self.table} has no column(s) {', '.join(unknown)}")
        if (self.start_ms is not None or self.end_ms is not None) and tdef.day_column is None:
            raise ValueError(f"{self.table} is not partitioned by day: it takes no time range")

    @property
    def day_column(self) -> str | None:
        return BY_NAME[self.table].day_column

    def expression(self) -> BooleanExpression:
        """The filter as a pyiceberg expression, for planning and for the Arrow reader."""
        expr: BooleanExpression = EqualTo("tenant", self.tenant)
        if self.start_ms is not None:
            expr = And(expr, GreaterThanOrEqual(self.day_column, iso_ms(self.start_ms)))
        if self.end_ms is not None:
            expr = And(expr, LessThan(self.day_column, iso_ms(self.end_ms)))
        if self.any_of:
            alternatives: BooleanExpression | None = None
            for column, values in self.any_of:
                one = In(column, set(values)) if values else None
                if one is not None:
                    alternatives = one if alternatives is None else Or(alternatives, one)
            expr = And(expr, alternatives if alternatives is not None else AlwaysFalse())
        return expr

    def sql(self) -> str:
        """The same filter as DuckDB SQL (values quoted inline: the view is a definition, not a
        prepared statement)."""
        parts = [f"tenant = {literal(self.tenant)}"]
        if self.start_ms is not None:
            parts.append(f"{quote(self.day_column)} >= make_timestamptz({int(self.start_ms)} * 1000)")
        if self.end_ms is not None:
            parts.append(f"{quote(self.day_column)} < make_timestamptz({int(self.end_ms)} * 1000)")
        if self.any_of:
            alts = [f"{quote(c)} IN ({', '.join(literal(v) for v in values)})" for c, values in self.any_of if values]
            parts.append("(" + " OR ".join(alts) + ")" if alts else "false")
        return " AND ".join(parts)


@dataclass
class ScanStats:
    """What the reads of a view planned: files and their bytes (Parquet sizes from the manifests:
    what a reader may fetch at most; projection and row-group pruning fetch less)."""

    files: int = 0
    bytes: int = 0
    paths: dict[str, list[str]] = field(default_factory=dict)  # table -> the planned files

    def add(self, table: str, tasks: list[FileScanTask]) -> None:
        self.files += len(tasks)
        self.bytes += sum(t.file.file_size_in_bytes for t in tasks)
        self.paths.setdefault(table, []).extend(t.file.file_path for t in tasks)


class Cache:
    """What a worker keeps between views, none of it a table's current state: the plans of
    recent reads, by table, snapshot id and read (a snapshot never changes), and the projected
    columns of remote data files, by file and columns (a data file never changes), within
    ``max_bytes``, least recently used first out. A commit makes a new snapshot: its reads are
    planned afresh, and only files it did not rewrite are found here."""

    def __init__(self, max_bytes: int = 64 << 20, max_plans: int = 256) -> None:
        self.max_bytes, self.max_plans = max_bytes, max_plans
        self._plans: OrderedDict[Any, list[FileScanTask]] = OrderedDict()
        self._files: OrderedDict[Any, pa.Table] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def plan(self, table: Table, read: Read) -> list[FileScanTask]:
        snapshot = table.current_snapshot()
        key = (str(table.metadata.table_uuid), snapshot.snapshot_id if snapshot else None, read)
        with self._lock:
            if key in self._plans:
                self._plans.move_to_end(key)
                return self._plans[key]
        tasks = plan(table, read)
        with self._lock:
            self._plans[key] = tasks
            while len(self._plans) > self.max_plans:
                self._plans.popitem(last=False)
        return tasks

    def file(self, key: Any) -> pa.Table | None:
        with self._lock:
            data = self._files.get(key)
            if data is not None:
                self._files.move_to_end(key)
            return data

    def keep(self, key: Any, data: pa.Table) -> None:
        with self._lock:
            if key in self._files or data.nbytes > self.max_bytes:
                return
            self._files[key] = data
            self._bytes += data.nbytes
            while self._bytes > self.max_bytes:
                _key, gone = self._files.popitem(last=False)
                self._bytes -= gone.nbytes


def plan(table: Table, read: Read) -> list[FileScanTask]:
    """The data files of ``table``'s current snapshot that may hold rows of ``read``."""
    return list(table.scan(row_filter=read.expression(), selected_fields=read.columns).plan_files())


def register(con: duckdb.DuckDBPyConnection, table: Table, read: Read, stats: ScanStats | None = None,
             cache: Cache | None = None) -> None:
    """Load ``read``'s rows and columns of ``table`` into a temporary DuckDB table named after the
    table on ``con``: a view's few queries then scan memory, not the files again."""
    tasks = cache.plan(table, read) if cache is not None else plan(table, read)
    if stats is not None:
        stats.add(read.table, tasks)
    schema = table.schema().select(*read.columns)
    paths = [local_path(t.file.file_path) for t in tasks]
    if tasks and all(p is not None for p in paths) and not any(t.delete_files for t in tasks):
        source = _local_source(con, [p for p in paths if p is not None], schema.as_arrow(), read)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {quote(read.table)} AS {source}")
        return
    con.register("_planned_arrow", _remote(table, read, tasks, cache or Cache(max_bytes=0)))
    try:
        cols = ", ".join(quote(c) for c in read.columns)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {quote(read.table)} AS SELECT {cols} FROM _planned_arrow WHERE {read.sql()}")
    finally:
        con.unregister("_planned_arrow")


def _remote(table: Table, read: Read, tasks: list[FileScanTask], cache: Cache) -> pa.Table:
    """The planned files' rows of the read's tenant, in the read's columns and the ones its filter
    needs, by pyiceberg's reader through the table's FileIO, file by file (each kept in ``cache``;
    the rest of the filter is applied by the caller)."""
    wanted = list(dict.fromkeys([*read.columns, "tenant", *(c for c, _ in read.any_of),
                                 *([read.day_column] if read.day_column else [])]))
    schema = table.schema().select(*wanted)
    keys = [(t.file.file_path, tuple(sorted(d.file_path for d in t.delete_files)), tuple(wanted), read.tenant)
            for t in tasks]
    parts = [cache.file(k) for k in keys]
    missing = [i for i, part in enumerate(parts) if part is None]

    def fetch(i: int) -> pa.Table:
        data = ArrowScan(table.metadata, table.io, schema, EqualTo("tenant", read.tenant)).to_table([tasks[i]])
        cache.keep(keys[i], data)
        return data

    if missing:
        with ThreadPoolExecutor(min(len(missing), FETCH_THREADS)) as pool:
            for i, data in zip(missing, pool.map(fetch, missing), strict=True):
                parts[i] = data
    found = [p for p in parts if p is not None]
    return pa.concat_tables(found) if found else schema.as_arrow().empty_table()


def _local_source(con: duckdb.DuckDBPyConnection, paths: list[str], schema: pa.Schema, read: Read) -> str:
    """The SELECT that reads ``read`` from local Parquet files with DuckDB."""
    files = "[" + ", ".join(literal(p) for p in paths) + "]"
    source = f"read_parquet({files}, hive_partitioning = false, union_by_name = true)"
    # a column added after some files were written (``source``) is missing from them: NULL there,
    # and spelled NULL when no planned file has it
    present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    filter_columns = {"tenant", *(c for c, _ in read.any_of)} | ({read.day_column} if read.day_column else set())
    missing = sorted(c for c in filter_columns if c not in present)
    if missing:  # written by another tool without them: say so rather than guess
        raise ValueError(f"{read.table}: the planned files lack the filter column(s) {', '.join(missing)}")
    cols = [f"CAST({quote(f.name) if f.name in present else 'NULL'} AS {sql_type(f.type)}) AS {quote(f.name)}"
            for f in schema]
    return f"SELECT {', '.join(cols)} FROM {source} WHERE {read.sql()}"


def database() -> duckdb.DuckDBPyConnection:
    """A DuckDB database for reads; each view takes a ``cursor()`` of it (its own connection, with
    private temporary tables). Dates are UTC dates; no progress bar on stdout."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET parquet_metadata_cache = true")  # data files never change once written
    return con


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | tuple = ()) -> list[dict[str, Any]]:
    rel = con.execute(sql, params)
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, row, strict=True)) for row in rel.fetchall()]
