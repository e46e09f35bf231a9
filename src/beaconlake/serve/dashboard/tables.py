"""The convert tables as DuckDB views, opened once per worker and reopened when a run commits.

Opening means asking the Iceberg catalog for each table's current files, which costs tens of
milliseconds: too much per request, so the views are kept and only rebuilt when the catalog
changes (the SQLite catalog file's modification time), or every ``REFRESH_SECS`` for catalogs
we cannot watch that cheaply.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from beaconlake.config import Settings

log = logging.getLogger(__name__)

REFRESH_SECS = 30.0


class Tables:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._engine: Any = None
        self._names: list[str] = []
        self._signature: Any = None
        self._reopening = False
        self._watch: Path | None = settings.catalog.local_file(settings.data_dir)

    def _current_signature(self) -> Any:
        if self._watch is not None:
            try:
                st = self._watch.stat()
            except FileNotFoundError:
                return None
            wal = self._watch.with_name(self._watch.name + "-wal")
            return (st.st_mtime_ns, st.st_size, wal.stat().st_mtime_ns if wal.exists() else 0)
        return int(time.monotonic() // REFRESH_SECS)

    def _current(self) -> list[str] | None:
        """The table names (None before the first convert run). After a run commits, the views
        are rebuilt in the background while queries go on against the previous snapshot, so no
        request waits for the catalog."""
        sig = self._current_signature()
        if sig is None:
            return None
        if self._engine is None:
            self._swap(*self._open(), sig)
        elif sig != self._signature and not self._reopening:
            self._reopening = True
            threading.Thread(target=self._reopen, args=(sig,), name="dashboard-tables", daemon=True).start()
        return self._names

    def _open(self) -> tuple[Any, list[str]]:
        from beaconlake.convert.query import connect
        from beaconlake.convert.run import open_store

        return connect(open_store(self.settings), self.settings.data_dir)

    def _swap(self, engine: Any, names: list[str], sig: Any) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine, self._names, self._signature = engine, names, sig

    def _reopen(self, sig: Any) -> None:
        try:
            engine, names = self._open()
            with self._lock:
                self._swap(engine, names, sig)
        except Exception:  # a catalog hiccup: keep serving the previous snapshot, retry on the next request
            log.exception("could not reopen the convert tables; the dashboard keeps the previous snapshot")
        finally:
            self._reopening = False

    def query(self, sql: str, params: list[Any] | tuple = ()) -> list[dict[str, Any]]:
        # One connection, one query at a time: the views are temporary, so a cursor (another
        # connection) would not see them; the dashboard's queries take milliseconds each.
        with self._lock:
            if self._current() is None:
                return []
            rel = self._engine.con.execute(sql, params)
            cols = [d[0] for d in rel.description]
            return [dict(zip(cols, row, strict=True)) for row in rel.fetchall()]

    def names(self) -> list[str]:
        with self._lock:
            return list(self._current() or [])

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
