"""``beaconlake query "SELECT ..."``: SQL over the Iceberg tables with DuckDB (the talk's Athena).

Each table of the namespace is a DuckDB view by its name (``events``, ``sessions``...), over the
data files of its current snapshot as pyiceberg plans them, so the query sees exactly one
committed version of every table. Only the tables the SQL names are opened: a table in a remote
warehouse is read through pyiceberg (DuckDB reads local files in place, only the columns and row
groups the query needs), so a query of one table never fetches the others.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from typing import TextIO

import duckdb
import pyarrow as pa
from pyiceberg.exceptions import NoSuchNamespaceError

from beaconlake.backends.engine.duckdb import DuckDBEngine
from beaconlake.backends.engine.settings import DuckDBEngineSettings
from beaconlake.convert.catalog import TableStore
from beaconlake.convert.errors import QueryError

MAX_CELL = 48  # characters per cell in the table format; csv and json are never cut


def connect(store: TableStore, data_dir: str, only: set[str] | None = None) -> tuple[DuckDBEngine, list[str]]:
    """A DuckDB engine with a view per table of the store's namespace (of those in ``only``,
    when given); returns every table's name."""
    engine = DuckDBEngine(DuckDBEngineSettings(), data_dir)
    try:
        names = sorted(ident[-1] for ident in store.catalog.list_tables(store.namespace))
    except NoSuchNamespaceError:
        names = []  # nothing converted yet
    for name in names:
        if only is None or name in only:
            store.register(engine, name)
    return engine, names


def named_tables(sql: str) -> set[str] | None:
    """The tables ``sql`` reads (CTEs left out), or None when that cannot be told (a statement
    without a FROM, such as SHOW TABLES, or SQL that does not parse: every table is opened and
    DuckDB says what is wrong)."""
    # a connection of its own: the module's default one is shared with whatever else in the
    # process used it (and closed it, or left settings on it)
    con = duckdb.connect()
    try:
        names = con.get_table_names(sql)
    except duckdb.Error:
        return None
    finally:
        con.close()
    return names or None


def run_query(store: TableStore, sql: str, data_dir: str) -> pa.Table:
    engine, names = connect(store, data_dir, named_tables(sql))
    try:
        result = engine.con.sql(sql)
        return result.to_arrow_table() if result is not None else pa.table({})
    except duckdb.ParserException as exc:
        raise QueryError(f"the SQL does not parse: {_first_line(exc)}") from None
    except duckdb.CatalogException as exc:
        tables = ", ".join(names) or "(none yet: run beaconlake convert)"
        raise QueryError(f"{_first_line(exc)}; the tables are: {tables}") from None
    except duckdb.Error as exc:
        raise QueryError(f"the query failed: {_first_line(exc)}") from None
    finally:
        engine.close()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def write(table: pa.Table, fmt: str, out: TextIO = sys.stdout) -> None:
    rows = table.to_pylist()
    names = table.column_names
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(names)
        w.writerows([_text(r[n]) for n in names] for r in rows)
    elif fmt == "json":
        json.dump(rows, out, default=_text, ensure_ascii=False)
        out.write("\n")
    else:
        cells = [[_cut(_text(r[n]) if r[n] is not None else "NULL") for n in names] for r in rows]
        widths = [max([len(n), *(len(c[i]) for c in cells)]) for i, n in enumerate(names)]
        out.write(" | ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip() + "\n")
        out.write("-+-".join("-" * w for w in widths) + "\n")
        out.writelines(" | ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip() + "\n" for c in cells)
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")


def _cut(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
