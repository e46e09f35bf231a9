"""The embedded profile store: one SQLite file (WAL: readers in every collector worker never wait
for the analyze run that writes), FTS5 over interests and segment labels.

A lookup is two B-tree probes (``profile_ids`` by id, then ``profiles`` by rowid), which is what
keeps it in microseconds at a million profiles. Each thread reads through its own connection.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

import msgspec

from beaconlake.backends.profiles.base import (
    TRAITS,
    Capabilities,
    ProfileStore,
    Row,
    Search,
    column,
    encode,
)
from beaconlake.backends.profiles.settings import SqliteProfilesSettings

TRAIT_COLS = ", ".join(f"t_{t} real" for t in TRAITS)
SCHEMA = f"""
create table if not exists profiles (
    tenant text not null, person_id text not null, user_id text, segment_id text,
    first_seen integer, last_seen integer, propensity real, {TRAIT_COLS}, updated_at integer not null,
    doc text not null,
    unique (tenant, person_id)
);
create index if not exists profiles_segment on profiles (tenant, segment_id, last_seen);
create index if not exists profiles_last_seen on profiles (tenant, last_seen);
create index if not exists profiles_propensity on profiles (tenant, propensity);
create table if not exists profile_ids (
    tenant text not null, id text not null, profile integer not null,
    primary key (tenant, id)
) without rowid;
create index if not exists profile_ids_profile on profile_ids (profile);
create virtual table if not exists profile_text using fts5 (text, tokenize = 'unicode61');
create table if not exists profile_segments (
    tenant text not null, segment_id text not null, doc text not null, primary key (tenant, segment_id)
) without rowid;
create table if not exists profile_meta (
    tenant text not null, key text not null, value text not null, primary key (tenant, key)
) without rowid;
"""
COLS = ("user_id", "segment_id", "first_seen", "last_seen", "propensity", *(f"t_{t}" for t in TRAITS), "updated_at")
_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(q: str) -> str | None:
    """Every word of ``q`` as a quoted FTS5 term, all required; None when it has no words."""
    words = _WORD.findall(q)
    return " ".join(f'"{w}"' for w in words) if words else None


class SqliteProfileStore(ProfileStore):
    capabilities = Capabilities(inline_reads=True, local_file=True)

    @classmethod
    def from_settings(cls, settings: SqliteProfilesSettings) -> SqliteProfileStore:
        return cls(settings.path)

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []  # every thread's connection, to close them all
        self._write_lock = threading.Lock()
        db = self._db()
        db.execute("pragma journal_mode=wal")
        db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("pragma synchronous=normal")
            db.execute("pragma cache_size=-65536")  # 64 MB of pages per connection: hot lookups stay in memory
            self._local.db = db
            self._all.append(db)
        return db

    # -- writing -------------------------------------------------------------------------------

    def upsert(self, rows: list[Row]) -> None:
        if not rows:
            return
        db = self._db()
        cols = ", ".join(COLS)
        marks = ", ".join("?" for _ in COLS)
        update = ", ".join(f"{c} = excluded.{c}" for c in (*COLS, "doc"))
        with self._write_lock:
            db.execute("begin immediate")
            try:
                for r in rows:
                    # an upsert keeps the rowid, which the FTS row and the ids point at
                    rowid = db.execute(
                        f"insert into profiles (tenant, person_id, {cols}, doc) values (?, ?, {marks}, ?) "
                        f"on conflict (tenant, person_id) do update set {update} returning rowid",
                        (r.tenant, r.person_id, *r.columns(), encode(r.doc)),
                    ).fetchone()[0]
                    db.execute("delete from profile_ids where profile = ?", (rowid,))
                    db.executemany("insert or replace into profile_ids (tenant, id, profile) values (?, ?, ?)",
                                   [(r.tenant, i, rowid) for i in sorted(r.ids())])
                    db.execute("delete from profile_text where rowid = ?", (rowid,))
                    db.execute("insert into profile_text (rowid, text) values (?, ?)", (rowid, r.text()))
                db.execute("commit")
            except BaseException:
                db.execute("rollback")
                raise

    def delete(self, tenant: str, person_ids: list[str]) -> int:
        if not person_ids:
            return 0
        db = self._db()
        gone = 0
        with self._write_lock:
            db.execute("begin immediate")
            try:
                for pid in person_ids:
                    row = db.execute("select rowid from profiles where tenant = ? and person_id = ?", (tenant, pid)).fetchone()
                    if row is None:
                        continue
                    db.execute("delete from profile_ids where profile = ?", (row[0],))
                    db.execute("delete from profile_text where rowid = ?", (row[0],))
                    db.execute("delete from profiles where rowid = ?", (row[0],))
                    gone += 1
                db.execute("commit")
            except BaseException:
                db.execute("rollback")
                raise
        return gone

    def delete_inactive(self, tenant: str, last_seen_before_ms: int) -> int:
        db = self._db()
        with self._write_lock:
            pids = [r[0] for r in db.execute("select person_id from profiles where tenant = ? and last_seen < ?",
                                            (tenant, last_seen_before_ms))]
        return self.delete(tenant, pids)

    def purge(self) -> None:
        # deleted rows live on in free pages and in the WAL until overwritten: rebuild the file
        # (VACUUM) and empty the WAL, so no byte of them is left in either
        db = self._db()
        with self._write_lock:
            db.execute("pragma wal_checkpoint(truncate)")
            db.execute("vacuum")
            db.execute("pragma wal_checkpoint(truncate)")

    # -- reading -------------------------------------------------------------------------------

    def get_json(self, tenant: str, any_id: str) -> str | None:
        row = self._db().execute(
            "select p.doc from profile_ids i join profiles p on p.rowid = i.profile where i.tenant = ? and i.id = ?",
            (tenant, any_id),
        ).fetchone()
        return None if row is None else row[0]

    def search(self, tenant: str, search: Search) -> tuple[list[dict[str, Any]], int]:
        where, args = ["p.tenant = ?"], [tenant]
        if search.segment is not None:
            where.append("p.segment_id = ?")
            args.append(search.segment)
        for trait, op, value in search.traits:
            where.append(f"{column(trait)} {op} ?")
            args.append(value)
        if search.q:
            match = fts_query(search.q)
            if match is None:
                return [], 0
            where.append("p.rowid in (select rowid from profile_text where profile_text match ?)")
            args.append(match)
        cond = " and ".join(where)
        db = self._db()
        total = db.execute(f"select count(*) from profiles p where {cond}", args).fetchone()[0]
        order = f"{column(search.sort)} {'desc' if search.descending else 'asc'} nulls last, p.person_id"
        docs = db.execute(f"select p.doc from profiles p where {cond} order by {order} limit ? offset ?",
                          [*args, search.limit, search.offset]).fetchall()
        return [msgspec.json.decode(d[0]) for d in docs], total

    def person_ids(self, tenant: str) -> list[str]:
        return [r[0] for r in self._db().execute("select person_id from profiles where tenant = ?", (tenant,))]

    def count(self, tenant: str) -> int:
        return self._db().execute("select count(*) from profiles where tenant = ?", (tenant,)).fetchone()[0]

    def set_segments(self, tenant: str, segments: list[dict[str, Any]]) -> None:
        db = self._db()
        with self._write_lock:
            db.execute("begin immediate")
            db.execute("delete from profile_segments where tenant = ?", (tenant,))
            db.executemany("insert into profile_segments (tenant, segment_id, doc) values (?, ?, ?)",
                           [(tenant, s["id"], msgspec.json.encode(s).decode()) for s in segments])
            db.execute("commit")

    def segments(self, tenant: str) -> list[dict[str, Any]]:
        db = self._db()
        sizes = dict(db.execute("select segment_id, count(*) from profiles where tenant = ? group by segment_id", (tenant,)))
        out = []
        for (doc,) in db.execute("select doc from profile_segments where tenant = ? ", (tenant,)):
            seg = msgspec.json.decode(doc)
            seg["size"] = sizes.get(seg["id"], 0)
            out.append(seg)
        return sorted(out, key=lambda s: (-s["size"], s["id"]))

    def get_meta(self, tenant: str, key: str) -> Any:
        row = self._db().execute("select value from profile_meta where tenant = ? and key = ?", (tenant, key)).fetchone()
        return None if row is None else msgspec.json.decode(row[0])

    def set_meta(self, tenant: str, key: str, value: Any) -> None:
        with self._write_lock:
            self._db().execute("insert or replace into profile_meta (tenant, key, value) values (?, ?, ?)",
                               (tenant, key, msgspec.json.encode(value).decode()))

    def close(self) -> None:
        for db in self._all:
            db.close()
        self._all.clear()
        self._local = threading.local()
