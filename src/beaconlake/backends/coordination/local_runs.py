"""The run log on one machine (the ``local`` coordination backend), in SQLite at
``<data_dir>/run/schedule.db``.

The scheduler process writes it; collector workers read it for the Pipeline view. A run asked
for from the dashboard is a file in ``<data_dir>/run/schedule/``: ``run-requested`` for every
tenant, ``run-requested.<tenant>`` for one (a tenant's admin key runs its own tenant only), made
by atomic rename and taken by the scheduler (renamed away, then read) when it starts the run: a
hand-off through disk that works from any worker process; requests made before the run starts
make one run, of the union of their tenants.

Runs record the node and the run-lease token they ran under, as on PostgreSQL: the next holder
of the lease marks what an earlier one left 'running' as interrupted.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beaconlake.backends.coordination.base import RUN_LEASE, Lease, RunLog, run_record, run_update
from beaconlake.backends.coordination.local_db import connect
from beaconlake.files import replace_file
from beaconlake.units import now_ms

if TYPE_CHECKING:
    from beaconlake.backends.coordination.local import LocalCoordination

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    trigger TEXT NOT NULL,          -- interval / requested / startup / manual
    started_at INTEGER NOT NULL,    -- ms epoch
    finished_at INTEGER,
    status TEXT NOT NULL,           -- running / ok / failed / interrupted
    stage TEXT,                     -- erase / convert / analyze: where it is, or where it failed
    events INTEGER,                 -- rows the convert run wrote to the events table
    new_files INTEGER,
    quarantined INTEGER,            -- raw files the convert run moved to quarantine/
    analyze TEXT,                   -- the analyze run's summary (JSON), or why it did not run
    error TEXT,
    tenants TEXT,                   -- JSON list of the tenants run; NULL: every tenant
    erasures INTEGER,               -- erasure requests carried out (privacy/forget.py)
    erasures_waiting INTEGER,       -- pending ones too recent for this run (the suppression refresh)
    node TEXT,                      -- the node that ran it (node.id)
    token INTEGER                   -- the run-lease token it ran under
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
ADDED_COLUMNS = (("quarantined", "INTEGER"), ("tenants", "TEXT"), ("erasures", "INTEGER"),
                 ("erasures_waiting", "INTEGER"), ("node", "TEXT"), ("token", "INTEGER"))


class LocalRunLog(RunLog):
    def __init__(self, owner: LocalCoordination, run_dir: Path, keep_runs: int = 200) -> None:
        self.owner = owner
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "schedule.db"
        self.request_path = run_dir / "schedule" / "run-requested"
        self.keep_runs = keep_runs
        # A connection per call: this is read by worker threads and written by another process.
        with self._db() as db:
            db.executescript(SCHEMA)
            # a run log written before a column existed gets it (SQLite adds it NULL for old runs)
            have = {row["name"] for row in db.execute("PRAGMA table_info(runs)")}
            for column, kind in ADDED_COLUMNS:
                if column not in have:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self.path)

    # -- the scheduler's side ---------------------------------------------------------------

    def start(self, run_id: str, trigger: str, tenants: list[str] | None = None, *, lease: Lease | None = None) -> None:
        with self._db() as db:
            db.execute("INSERT INTO runs (run_id, trigger, started_at, status, stage, tenants, node, token) "
                       "VALUES (?, ?, ?, 'running', 'erase', ?, ?, ?)",
                       (run_id, trigger, now_ms(), None if tenants is None else json.dumps(sorted(tenants)),
                        self.owner.node, None if lease is None else lease.token))

    def update(self, run_id: str, **fields: Any) -> None:
        self._update(run_id, fields, "")

    def _update(self, run_id: str, fields: dict[str, Any], where: str) -> None:
        fields = run_update(fields)
        if "tenants" in fields and fields["tenants"] is not None:
            fields["tenants"] = json.dumps(fields["tenants"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._db() as db:
            db.execute(f"UPDATE runs SET {cols} WHERE run_id = ?{where}", (*fields.values(), run_id))

    def finish(self, run_id: str, status: str, **fields: Any) -> None:
        self._update(run_id, {"status": status, "finished_at": now_ms(), **fields}, " AND status = 'running'")
        with self._db() as db:
            db.execute("DELETE FROM runs WHERE run_id NOT IN (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT ?)",
                       (self.keep_runs,))

    def interrupt_stale(self) -> int:
        """Runs left 'running' by a scheduler that was killed (its lease is gone): they will never finish."""
        live = self.owner.holder(RUN_LEASE)
        with self._db() as db:
            cur = db.execute("UPDATE runs SET status = 'interrupted', finished_at = ?, "
                             "error = coalesce(error, 'the scheduler stopped during this run') "
                             "WHERE status = 'running' AND (? IS NULL OR token IS NOT ?)",  # IS NOT: NULL-safe
                             (now_ms(), *[None if live is None else live["token"]] * 2))
            return cur.rowcount

    def set(self, key: str, value: Any) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def take_request(self) -> tuple[str, list[str] | None] | None:
        """The pending dashboard requests as one run (and forget them): its trigger and its
        tenants (None: every tenant), or None when nothing is asked for. Each request file is
        renamed away before it is read, so a request made meanwhile waits for the next run."""
        folder = self.request_path.parent
        triggers: list[str] = []
        tenants: set[str] | None = set()
        for path in sorted(folder.glob(self.request_path.name + "*")) if folder.is_dir() else []:
            taken = path.with_name(f".taken-{os.getpid()}-{path.name}")
            try:
                os.replace(path, taken)
            except FileNotFoundError:
                continue
            triggers.append(taken.read_text().strip() or "requested")
            taken.unlink()
            if path.name == self.request_path.name:
                tenants = None
            elif tenants is not None:
                tenants.add(path.name[len(self.request_path.name) + 1:])
        if not triggers:
            return None
        return ", ".join(dict.fromkeys(triggers)), None if tenants is None else sorted(tenants)

    # -- readers ------------------------------------------------------------------------------

    def request(self, who: str = "requested", tenant: str | None = None) -> None:
        """Ask the scheduler for a run now: of ``tenant`` only, or of every tenant (None)."""
        self.request_path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self._request_file(tenant), who.encode(), self.request_path.with_name(f".{os.getpid()}.tmp"))

    def requested(self, tenant: str | None = None) -> bool:
        """Whether a run is asked for and not started yet: any (None), or one that runs ``tenant``."""
        if self.request_path.exists():
            return True
        if tenant is not None:
            return self._request_file(tenant).exists()
        return any(self.request_path.parent.glob(self.request_path.name + ".*"))

    def _request_file(self, tenant: str | None) -> Path:
        return self.request_path if tenant is None else self.request_path.with_name(f"{self.request_path.name}.{tenant}")

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["tenants"] = json.loads(d["tenants"]) if d["tenants"] else None
            out.append(run_record(d))
        return out

    def get(self, run_id: str) -> dict[str, Any]:
        found = [r for r in self.runs(self.keep_runs) if r["run_id"] == run_id]
        if not found:
            raise KeyError(f"no run {run_id!r} in the run log")
        return found[0]

    def state(self) -> dict[str, Any]:
        with self._db() as db:
            return {r["key"]: json.loads(r["value"]) for r in db.execute("SELECT key, value FROM state")}
