"""The convert tables for the dashboard's views: each view reads only the files and columns it
asks for (``beaconlake.convert.scan``), never a whole table.

A view opens a ``View`` (its own DuckDB connection, so views run side by side), declares each
table it needs as a ``Read`` (tenant, time range, columns), and queries the rows those reads
load. Each table's pyiceberg handle is kept while the catalog says it is current: with the
embedded SQLite catalog, until the catalog file changes (every commit changes it; free to check);
with a catalog server, it is loaded again for every view (one catalog lookup and the metadata
file), so a run that commits on any node is seen by the next view on every node. Beyond that a
worker keeps only what cannot change (``scan.Cache``): plans of reads at a snapshot, and the
projected columns of remote data files, within a byte budget. No whole table, no table's state.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from beaconlake.config import Settings
from beaconlake.errors import BackendUnavailable
from beaconlake.convert import scan
from beaconlake.convert.scan import Read, ScanStats


class View:
    """One view's reads and queries, on a connection of its own."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables
        self.con = tables.database.cursor()
        self.stats = ScanStats()
        self._handles: dict[str, Any] = {}  # one handle per table and view: its reads see one snapshot

    def has(self, name: str) -> bool:
        """Whether table ``name`` exists (loaded once per view: every read of it sees one snapshot)."""
        if name not in self._handles:
            with _reaching("the Iceberg catalog", f"the {name} table"):
                self._handles[name] = self._tables.table(name)
        return self._handles[name] is not None

    def read(self, read: Read) -> None:
        """Load ``read`` into a temporary table named after its table (replacing an earlier read of it)."""
        if not self.has(read.table):
            raise LookupError(f"no table {read.table} yet: the first convert run has not happened")
        with _reaching("the warehouse", f"the {read.table} table"):
            scan.register(self.con, self._handles[read.table], read, self.stats, self._tables.cache)

    def query(self, sql: str, params: list[Any] | tuple = ()) -> list[dict[str, Any]]:
        return scan.rows(self.con, sql, params)


class Tables:
    """``store``: the tables' ``TableStore``; by default the one ``settings`` describe, opened on
    first use."""

    def __init__(self, settings: Settings, store: Any = None) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._store: Any = store
        self._handles: dict[str, Any] = {}  # table name -> pyiceberg Table
        self._signature: Any = None
        # the embedded catalog's file, when the tables are the ones the settings describe
        self._watch: Path | None = settings.catalog.local_file(settings.data_dir) if store is None else None
        self.last_stats = ScanStats()  # the latest view's, for the benchmark and the tests
        self._database: Any = None
        self.cache = scan.Cache()  # plans by snapshot, remote files' columns: nothing that changes

    @property
    def database(self) -> Any:
        """The worker's DuckDB database for the views' reads (each view takes a cursor of it)."""
        with self._lock:
            if self._database is None:
                self._database = scan.database()
            return self._database

    @property
    def store(self) -> Any:
        if self._store is None:
            from beaconlake.convert.run import open_store

            self._store = open_store(self.settings)
        return self._store

    def _catalog_signature(self) -> Any:
        """The SQLite catalog file's state, or None for a catalog server (asked per table)."""
        if self._watch is None:
            return None
        try:
            st = self._watch.stat()
        except FileNotFoundError:
            return "absent"
        wal = self._watch.with_name(self._watch.name + "-wal")
        return (st.st_mtime_ns, st.st_size, wal.stat().st_mtime_ns if wal.exists() else 0)

    def names(self) -> list[str]:
        """The tables that exist (none before the first convert run)."""
        from pyiceberg.exceptions import NoSuchNamespaceError

        if self._catalog_signature() == "absent":
            return []
        with _reaching("the Iceberg catalog", "the list of tables"):
            store = self.store
            try:
                return sorted(ident[-1] for ident in store.catalog.list_tables(store.namespace))
            except NoSuchNamespaceError:
                return []

    def table(self, name: str) -> Any:
        """The pyiceberg handle of ``name`` at its current snapshot, or None when it does not exist."""
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        sig = self._catalog_signature()
        with self._lock:
            if sig is not None and sig != self._signature:
                self._handles, self._signature = {}, sig
            held = self._handles.get(name)
        if held is not None and sig is not None:
            return held  # the SQLite catalog has not changed since it was loaded
        try:
            fresh = self.store.table(name)
        except (NoSuchTableError, NoSuchNamespaceError):
            return None
        with self._lock:
            self._handles[name] = fresh
        return fresh

    @contextmanager
    def view(self) -> Iterator[View]:
        v = View(self)
        try:
            yield v
        finally:
            v.con.close()
            self.last_stats = v.stats

    def close(self) -> None:
        self._handles = {}
        if self._database is not None:
            self._database.close()


class WholeView(View):
    """A view that reads every table it names whole, the way the dashboard did before planned
    reads (``TableStore.register``: every data file in place when local, else the whole table
    into memory): the reference the tests and ``bench/dashboard`` compare planned reads against."""

    def __init__(self, tables: Tables) -> None:
        from beaconlake.backends.engine.duckdb import DuckDBEngine
        from beaconlake.backends.engine.settings import DuckDBEngineSettings

        self._tables = tables
        self.stats = ScanStats()
        self._handles = {}
        self._engine = DuckDBEngine(DuckDBEngineSettings(), tables.settings.data_dir)
        self.con = self._engine.con

    def read(self, read: Read) -> None:
        if not self.has(read.table):
            raise LookupError(f"no table {read.table} yet: the first convert run has not happened")
        if read.table not in self.stats.paths:
            self.stats.add(read.table, list(self._handles[read.table].scan().plan_files()))
            self._tables.store.register(self._engine, read.table)


class WholeTables(Tables):
    @contextmanager
    def view(self) -> Iterator[View]:
        v = WholeView(self)
        try:
            yield v
        finally:
            v.con.close()
            self.last_stats = v.stats


@contextmanager
def _reaching(what: str, reading: str) -> Iterator[None]:
    """A catalog server or an object store that cannot be reached is a 503 for the view (the
    next request tries again), not a 500."""
    from sqlalchemy.exc import DBAPIError

    from beaconlake.backends.catalog import CatalogError

    try:
        yield
    except (OSError, DBAPIError, CatalogError) as exc:
        raise BackendUnavailable(f"{what} cannot be reached to read {reading}: "
                                 f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__}") from exc
