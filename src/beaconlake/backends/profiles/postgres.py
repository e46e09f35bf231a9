"""The profile store on PostgreSQL: JSONB documents, a GIN index over them and a tsvector for
full text, shared by every process and machine (the scale-out backend). Its connection is made
on first use and made again after the server restarts (``pgconn``)."""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg.types.json import Jsonb

from beaconlake.backends.pgconn import CALL_TIMEOUT_SECS, PgConnection

from beaconlake.backends.profiles.base import (
    TRAITS,
    Capabilities,
    ProfileStore,
    Row,
    Search,
    column,
    encode,
)
from beaconlake.backends.profiles.settings import PostgresProfilesSettings

TRAIT_COLS = ", ".join(f"t_{t} double precision" for t in TRAITS)
SCHEMA = f"""
create table if not exists profiles (
    tenant text not null, person_id text not null, user_id text, segment_id text,
    first_seen bigint, last_seen bigint, propensity double precision, {TRAIT_COLS}, updated_at bigint not null,
    doc jsonb not null, search tsvector not null,
    primary key (tenant, person_id)
);
create index if not exists profiles_segment on profiles (tenant, segment_id, last_seen);
create index if not exists profiles_last_seen on profiles (tenant, last_seen);
create index if not exists profiles_propensity on profiles (tenant, propensity);
create index if not exists profiles_search on profiles using gin (search);
create index if not exists profiles_doc on profiles using gin (doc jsonb_path_ops);
create table if not exists profile_ids (
    tenant text not null, id text not null, person_id text not null, primary key (tenant, id)
);
create index if not exists profile_ids_person on profile_ids (tenant, person_id);
create table if not exists profile_segments (
    tenant text not null, segment_id text not null, doc jsonb not null, primary key (tenant, segment_id)
);
create table if not exists profile_meta (
    tenant text not null, key text not null, value jsonb not null, primary key (tenant, key)
);
"""
COLS = ("user_id", "segment_id", "first_seen", "last_seen", "propensity", *(f"t_{t}" for t in TRAITS), "updated_at")


class PostgresProfileStore(ProfileStore):
    capabilities = Capabilities(inline_reads=False, local_file=False)

    @classmethod
    def from_settings(cls, settings: PostgresProfilesSettings) -> PostgresProfileStore:
        return cls(settings.dsn, settings.timeout_secs)

    def __init__(self, dsn: str, timeout_secs: float = CALL_TIMEOUT_SECS) -> None:
        # reads and small writes are bounded; an analyze run's upserts, an erasure's deletes and
        # the purge's VACUUM FULL may take long, and say unbounded
        self.db = PgConnection(dsn, SCHEMA, lock_id=7352, timeout_secs=timeout_secs, setting="profiles.timeout_secs")

    def upsert(self, rows: list[Row]) -> None:
        if not rows:
            return
        cols = ", ".join(COLS)
        marks = ", ".join("%s" for _ in COLS)
        update = ", ".join(f"{c} = excluded.{c}" for c in (*COLS, "doc", "search"))

        def upsert(conn) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    f"insert into profiles (tenant, person_id, {cols}, doc, search) "
                    f"values (%s, %s, {marks}, %s::jsonb, to_tsvector('simple', %s)) "
                    f"on conflict (tenant, person_id) do update set {update}",
                    [(r.tenant, r.person_id, *r.columns(), encode(r.doc), r.text()) for r in rows],
                )
                cur.executemany("delete from profile_ids where tenant = %s and person_id = %s",
                                [(r.tenant, r.person_id) for r in rows])
                cur.executemany(
                    "insert into profile_ids (tenant, id, person_id) values (%s, %s, %s) "
                    "on conflict (tenant, id) do update set person_id = excluded.person_id",
                    [(r.tenant, i, r.person_id) for r in rows for i in sorted(r.ids())],
                )

        self.db.run(upsert, bounded=False)

    def delete(self, tenant: str, person_ids: list[str]) -> int:
        if not person_ids:
            return 0

        def delete(conn) -> int:
            with conn.transaction():
                conn.execute("delete from profile_ids where tenant = %s and person_id = any(%s)", (tenant, person_ids))
                return conn.execute("delete from profiles where tenant = %s and person_id = any(%s)",
                                    (tenant, person_ids)).rowcount

        return self.db.run(delete, bounded=False)

    def delete_inactive(self, tenant: str, last_seen_before_ms: int) -> int:
        pids = [r[0] for r in self.db.run(lambda conn: conn.execute(
            "select person_id from profiles where tenant = %s and last_seen < %s", (tenant, last_seen_before_ms)).fetchall())]
        return self.delete(tenant, pids)

    def purge(self) -> None:
        # dead row versions stay in the table's pages until VACUUM FULL rewrites them
        self.db.run(lambda conn: conn.execute("vacuum full profiles, profile_ids"), bounded=False)

    def get_json(self, tenant: str, any_id: str) -> str | None:
        row = self.db.run(lambda conn: conn.execute(
            "select p.doc::text from profile_ids i join profiles p on p.tenant = i.tenant and p.person_id = i.person_id "
            "where i.tenant = %s and i.id = %s", (tenant, any_id)).fetchone())
        return None if row is None else row[0]

    def search(self, tenant: str, search: Search) -> tuple[list[dict[str, Any]], int]:
        where, args = ["tenant = %s"], [tenant]
        if search.segment is not None:
            where.append("segment_id = %s")
            args.append(search.segment)
        for trait, op, value in search.traits:
            where.append(f"{column(trait)} {op} %s")
            args.append(value)
        if search.q:
            where.append("search @@ plainto_tsquery('simple', %s)")
            args.append(search.q)
        cond = " and ".join(where)
        order = f"{column(search.sort)} {'desc' if search.descending else 'asc'} nulls last, person_id"

        def find(conn) -> tuple[int, list]:
            total = conn.execute(f"select count(*) from profiles where {cond}", args).fetchone()[0]
            docs = conn.execute(f"select doc::text from profiles where {cond} order by {order} limit %s offset %s",
                                [*args, search.limit, search.offset]).fetchall()
            return total, docs

        total, docs = self.db.run(find)
        return [msgspec.json.decode(d[0]) for d in docs], total

    def person_ids(self, tenant: str) -> list[str]:
        return self.db.run(lambda conn: [r[0] for r in conn.execute(
            "select person_id from profiles where tenant = %s", (tenant,))])

    def count(self, tenant: str) -> int:
        return self.db.run(lambda conn: conn.execute(
            "select count(*) from profiles where tenant = %s", (tenant,)).fetchone()[0])

    def set_segments(self, tenant: str, segments: list[dict[str, Any]]) -> None:
        def replace(conn) -> None:
            with conn.transaction():
                conn.execute("delete from profile_segments where tenant = %s", (tenant,))
                with conn.cursor() as cur:
                    cur.executemany("insert into profile_segments (tenant, segment_id, doc) values (%s, %s, %s)",
                                    [(tenant, s["id"], Jsonb(s)) for s in segments])

        self.db.run(replace)

    def segments(self, tenant: str) -> list[dict[str, Any]]:
        def read(conn) -> tuple[dict, list]:
            sizes = dict(conn.execute(
                "select segment_id, count(*) from profiles where tenant = %s group by segment_id", (tenant,)).fetchall())
            return sizes, [r[0] for r in conn.execute("select doc from profile_segments where tenant = %s", (tenant,))]

        sizes, docs = self.db.run(read)
        for seg in docs:
            seg["size"] = sizes.get(seg["id"], 0)
        return sorted(docs, key=lambda s: (-s["size"], s["id"]))

    def get_meta(self, tenant: str, key: str) -> Any:
        row = self.db.run(lambda conn: conn.execute(
            "select value from profile_meta where tenant = %s and key = %s", (tenant, key)).fetchone())
        return None if row is None else row[0]

    def set_meta(self, tenant: str, key: str, value: Any) -> None:
        self.db.run(lambda conn: conn.execute(
            "insert into profile_meta (tenant, key, value) values (%s, %s, %s) "
            "on conflict (tenant, key) do update set value = excluded.value", (tenant, key, Jsonb(value))))

    def close(self) -> None:
        self.db.close()
