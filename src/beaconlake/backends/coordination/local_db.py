"""The SQLite files of the local coordination backend (``coordination.db``, ``schedule.db``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """One transaction on a connection closed at its end, not whenever its last reference goes (a traceback
    can keep it): sqlite3's own ``with`` commits but leaves the database, WAL and shared-memory files open."""
    db = sqlite3.connect(path, timeout=10)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        with db:
            yield db
    finally:
        db.close()
