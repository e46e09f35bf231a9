"""Coordination on one machine: leases are ``flock`` files, everything else SQLite, under
``<data_dir>/run/``. Every process of one ``beaconlake up`` (and the CLI beside it) sees the same
state; another machine sees none of it, which is why a deployment of several nodes uses the
``postgres`` backend.

A flock dies with its process, so a lease here never outlives its holder and needs no renewal;
the token still grows with every acquisition, so fenced writes behave as on PostgreSQL.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from beaconlake.backends.coordination.base import Capabilities, Coordination, Lease, LeaseLost, RunLog
from beaconlake.backends.coordination.local_db import connect
from beaconlake.backends.coordination.settings import LocalCoordinationSettings
from beaconlake.units import now_ms

SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT, token INTEGER NOT NULL, since_ms INTEGER);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (node TEXT PRIMARY KEY, role TEXT NOT NULL, seen_ms INTEGER NOT NULL, info TEXT NOT NULL);
"""


class LocalLease(Lease):
    def __init__(self, owner: LocalCoordination, name: str, file: Any, token: int) -> None:
        self.owner, self.name, self.file, self.token = owner, name, file, token
        self.holder = owner.node

    def renew(self) -> bool:
        return self.file is not None

    def check(self) -> None:
        if self.file is None:
            raise LeaseLost(f"lease {self.name!r} was released")

    def release(self) -> None:
        if self.file is not None:
            with self.owner._db() as db:
                db.execute("UPDATE leases SET holder = NULL WHERE name = ? AND token = ?", (self.name, self.token))
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None


class LocalCoordination(Coordination):
    capabilities = Capabilities(shared=False)

    def __init__(self, run_dir: Path, node: str) -> None:
        self.run_dir, self.node = run_dir, node
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "coordination.db"
        with self._db() as db:
            db.executescript(SCHEMA)

    @classmethod
    def from_settings(cls, settings: LocalCoordinationSettings, *, run_dir: Path, node: str) -> LocalCoordination:
        return cls(run_dir, node)

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        # a connection per call: read by server worker threads, written by other processes
        return connect(self.path)

    def acquire(self, name: str, ttl_secs: float) -> Lease | None:
        path = self.run_dir / "leases" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        file = open(path, "w")  # noqa: SIM115 - held as long as the lease
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return None
        with self._db() as db:
            db.execute("INSERT INTO leases (name, holder, token, since_ms) VALUES (?, ?, 1, ?) "
                       "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = token + 1, "
                       "since_ms = excluded.since_ms", (name, self.node, now_ms()))
            token = db.execute("SELECT token FROM leases WHERE name = ?", (name,)).fetchone()["token"]
        return LocalLease(self, name, file, token)

    def holder(self, name: str) -> dict[str, Any] | None:
        with self._db() as db:
            row = db.execute("SELECT holder, token FROM leases WHERE name = ?", (name,)).fetchone()
        if row is None or row["holder"] is None or not self._locked(name):
            return None  # a holder killed with -9 left its row, but its flock died with it
        return {"holder": row["holder"], "token": row["token"], "expires_ms": None}

    def _locked(self, name: str) -> bool:
        """Whether some process holds lease ``name``'s flock (ours included: a second open file conflicts)."""
        path = self.run_dir / "leases" / f"{name}.lock"
        try:
            with open(path) as probe:
                try:
                    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                fcntl.flock(probe, fcntl.LOCK_UN)
                return False
        except FileNotFoundError:
            return False

    def get(self, key: str) -> Any | None:
        with self._db() as db:
            row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row["value"])

    def put(self, key: str, value: Any, lease: Lease | None = None) -> None:
        if lease is not None:
            lease.check()
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO kv (key, value, updated_ms) VALUES (?, ?, ?)",
                       (key, json.dumps(value), now_ms()))

    def heartbeat(self, role: str, info: dict[str, Any]) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO nodes (node, role, seen_ms, info) VALUES (?, ?, ?, ?)",
                       (self.node, role, now_ms(), json.dumps(info)))

    def nodes(self) -> list[dict[str, Any]]:
        with self._db() as db:
            rows = db.execute("SELECT node, role, seen_ms, info FROM nodes ORDER BY seen_ms DESC").fetchall()
        now = now_ms()
        return [{"node": r["node"], "role": r["role"], "seen_ms": r["seen_ms"], "age_ms": max(0, now - r["seen_ms"]),
                 "info": json.loads(r["info"])} for r in rows]

    def run_log(self, keep_runs: int = 200) -> RunLog:
        from beaconlake.backends.coordination.local_runs import LocalRunLog

        return LocalRunLog(self, self.run_dir, keep_runs)
