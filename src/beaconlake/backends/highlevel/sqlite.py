"""The embedded high-level index: one SQLite file under data_dir (WAL, so readers in every
collector worker never wait for the deliverer that writes)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import msgspec

from beaconlake.backends.highlevel.base import Capabilities, HighLevelEvent, HighLevelIndex
from beaconlake.backends.highlevel.settings import SqliteHighLevelSettings

SCHEMA = """
create table if not exists high_level_events (
    tenant text not null, event_id text not null, name text not null, anonymous_id text not null,
    user_id text, session_id text, event_ts integer not null, source text not null,
    matched_event_ids text not null, props text not null,
    primary key (tenant, event_id)
) without rowid;
create index if not exists hle_name on high_level_events (tenant, name, event_ts);
create index if not exists hle_time on high_level_events (tenant, event_ts);
create index if not exists hle_anon on high_level_events (tenant, anonymous_id, event_ts);
create index if not exists hle_user on high_level_events (tenant, user_id, event_ts);
create table if not exists identities (
    tenant text not null, user_id text not null, anonymous_id text not null,
    primary key (tenant, user_id, anonymous_id)
) without rowid;
"""
COLUMNS = "tenant, event_id, name, anonymous_id, user_id, session_id, event_ts, source, matched_event_ids, props"


def _row(r: tuple) -> HighLevelEvent:
    return HighLevelEvent(
        tenant=r[0], event_id=r[1], name=r[2], anonymous_id=r[3], user_id=r[4], session_id=r[5],
        event_ts=r[6], source=r[7], matched_event_ids=msgspec.json.decode(r[8]), props=r[9],
    )


def range_sql(name: str | None, start_ms: int | None, end_ms: int | None, mark: str = "?") -> tuple[str, list]:
    sql, args = "", []
    if name is not None:
        sql += f" and name = {mark}"
        args.append(name)
    if start_ms is not None:
        sql += f" and event_ts >= {mark}"
        args.append(start_ms)
    if end_ms is not None:
        sql += f" and event_ts < {mark}"
        args.append(end_ms)
    return sql, args


class SqliteHighLevelIndex(HighLevelIndex):
    capabilities = Capabilities(local_file=True)

    @classmethod
    def from_settings(cls, settings: SqliteHighLevelSettings) -> SqliteHighLevelIndex:
        return cls(settings.path)

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self.db.execute("pragma journal_mode=wal")
        self.db.execute("pragma synchronous=normal")
        self.db.executescript(SCHEMA)
        self._lock = threading.Lock()  # one connection, used from the event loop and threads

    def add(self, events: list[HighLevelEvent], identities: list[tuple[str, str, str]] = ()) -> None:
        rows = [
            (e.tenant, e.event_id, e.name, e.anonymous_id, e.user_id, e.session_id, e.event_ts, e.source,
             msgspec.json.encode(e.matched_event_ids).decode(), e.props)
            for e in events
        ]
        with self._lock:
            self.db.execute("begin immediate")
            try:
                self.db.executemany(f"insert or ignore into high_level_events ({COLUMNS}) values (?,?,?,?,?,?,?,?,?,?)", rows)
                self.db.executemany("insert or ignore into identities values (?,?,?)",
                                    [(t, u, a) for t, a, u in identities])
                self.db.execute("commit")
            except BaseException:
                self.db.execute("rollback")
                raise

    def search(self, tenant, name, start_ms, end_ms, limit):
        where, args = range_sql(name, start_ms, end_ms)
        with self._lock:
            rows = self.db.execute(
                f"select {COLUMNS} from high_level_events where tenant = ?{where} order by event_ts desc, event_id limit ?",
                [tenant, *args, limit],
            ).fetchall()
        return [_row(r) for r in rows]

    def counts(self, tenant, name, start_ms, end_ms):
        where, args = range_sql(name, start_ms, end_ms)
        with self._lock:
            rows = self.db.execute(
                f"select name, count(*) from high_level_events where tenant = ?{where} group by name order by name",
                [tenant, *args],
            ).fetchall()
        return dict(rows)

    def person(self, tenant, person_id, limit):
        # three index range scans (anonymous id, user id, the user's anonymous ids), merged
        sql = f"""
            select {COLUMNS} from high_level_events where tenant = ? and anonymous_id = ?
            union
            select {COLUMNS} from high_level_events where tenant = ? and user_id = ?
            union
            select {COLUMNS} from high_level_events where tenant = ? and anonymous_id in
                (select anonymous_id from identities where tenant = ? and user_id = ?)
            order by event_ts desc, event_id limit ?"""
        with self._lock:
            rows = self.db.execute(sql, [tenant, person_id, tenant, person_id, tenant, tenant, person_id, limit]).fetchall()
        return [_row(r) for r in rows]

    def linked_ids(self, tenant: str, ids: set[str]) -> set[str]:
        found = set(ids)
        with self._lock:
            for i in sorted(ids):
                found.update(r[0] for r in self.db.execute(
                    "select anonymous_id from identities where tenant = ? and user_id = ? union "
                    "select user_id from identities where tenant = ? and anonymous_id = ?", (tenant, i, tenant, i)))
        return found

    def forget(self, tenant: str, ids: set[str]) -> int:
        args = [(tenant, i, i) for i in sorted(ids)]
        with self._lock:
            self.db.execute("begin immediate")
            try:
                gone = sum(self.db.execute("delete from high_level_events where tenant = ? and "
                                           "(anonymous_id = ? or user_id = ?)", a).rowcount for a in args)
                self.db.executemany("delete from identities where tenant = ? and (anonymous_id = ? or user_id = ?)", args)
                self.db.execute("commit")
            except BaseException:
                self.db.execute("rollback")
                raise
        self.purge()
        return gone

    def purge(self) -> None:
        # deleted rows live on in free pages and in the WAL until overwritten: rebuild the file
        # (VACUUM) and empty the WAL, so no byte of them is left in either
        with self._lock:
            self.db.execute("pragma wal_checkpoint(truncate)")
            self.db.execute("vacuum")
            self.db.execute("pragma wal_checkpoint(truncate)")

    def close(self) -> None:
        self.db.close()
