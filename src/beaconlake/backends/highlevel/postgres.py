"""The high-level index on PostgreSQL: the server backend, shared by every process and machine.
Its connection is made on first use and made again after the server restarts (``pgconn``)."""

from __future__ import annotations

import msgspec

from beaconlake.backends.highlevel.base import Capabilities, HighLevelEvent, HighLevelIndex
from beaconlake.backends.highlevel.settings import PostgresHighLevelSettings
from beaconlake.backends.highlevel.sqlite import COLUMNS, _row, range_sql
from beaconlake.backends.pgconn import CALL_TIMEOUT_SECS, PgConnection

SCHEMA = """
create table if not exists high_level_events (
    tenant text not null, event_id text not null, name text not null, anonymous_id text not null,
    user_id text, session_id text, event_ts bigint not null, source text not null,
    matched_event_ids text not null, props text not null,
    primary key (tenant, event_id)
);
create index if not exists hle_name on high_level_events (tenant, name, event_ts);
create index if not exists hle_time on high_level_events (tenant, event_ts);
create index if not exists hle_anon on high_level_events (tenant, anonymous_id, event_ts);
create index if not exists hle_user on high_level_events (tenant, user_id, event_ts);
create table if not exists identities (
    tenant text not null, user_id text not null, anonymous_id text not null,
    primary key (tenant, user_id, anonymous_id)
);
"""


class PostgresHighLevelIndex(HighLevelIndex):
    capabilities = Capabilities(local_file=False)

    @classmethod
    def from_settings(cls, settings: PostgresHighLevelSettings) -> PostgresHighLevelIndex:
        return cls(settings.dsn, settings.timeout_secs)

    def __init__(self, dsn: str, timeout_secs: float = CALL_TIMEOUT_SECS) -> None:
        self.db = PgConnection(dsn, SCHEMA, lock_id=7351, timeout_secs=timeout_secs, setting="highlevel.timeout_secs")

    def add(self, events: list[HighLevelEvent], identities: list[tuple[str, str, str]] = ()) -> None:
        rows = [
            (e.tenant, e.event_id, e.name, e.anonymous_id, e.user_id, e.session_id, e.event_ts, e.source,
             msgspec.json.encode(e.matched_event_ids).decode(), e.props)
            for e in events
        ]

        def add(conn) -> None:
            with conn.transaction(), conn.cursor() as cur:
                if rows:
                    cur.executemany(
                        f"insert into high_level_events ({COLUMNS}) values (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                        "on conflict do nothing",
                        rows,
                    )
                if identities:
                    cur.executemany("insert into identities values (%s,%s,%s) on conflict do nothing",
                                    [(t, u, a) for t, a, u in identities])

        self.db.run(add)

    def search(self, tenant, name, start_ms, end_ms, limit):
        where, args = range_sql(name, start_ms, end_ms, "%s")
        rows = self.db.run(lambda conn: conn.execute(
            f"select {COLUMNS} from high_level_events where tenant = %s{where} order by event_ts desc, event_id limit %s",
            [tenant, *args, limit],
        ).fetchall())
        return [_row(r) for r in rows]

    def counts(self, tenant, name, start_ms, end_ms):
        where, args = range_sql(name, start_ms, end_ms, "%s")
        rows = self.db.run(lambda conn: conn.execute(
            f"select name, count(*) from high_level_events where tenant = %s{where} group by name order by name",
            [tenant, *args],
        ).fetchall())
        return {n: int(c) for n, c in rows}

    def person(self, tenant, person_id, limit):
        sql = f"""
            select {COLUMNS} from high_level_events where tenant = %s and anonymous_id = %s
            union
            select {COLUMNS} from high_level_events where tenant = %s and user_id = %s
            union
            select {COLUMNS} from high_level_events where tenant = %s and anonymous_id in
                (select anonymous_id from identities where tenant = %s and user_id = %s)
            order by event_ts desc, event_id limit %s"""
        args = [tenant, person_id, tenant, person_id, tenant, tenant, person_id, limit]
        rows = self.db.run(lambda conn: conn.execute(sql, args).fetchall())
        return [_row(r) for r in rows]

    def linked_ids(self, tenant: str, ids: set[str]) -> set[str]:
        wanted = sorted(ids)
        rows = self.db.run(lambda conn: conn.execute(
            "select anonymous_id from identities where tenant = %s and user_id = any(%s) union "
            "select user_id from identities where tenant = %s and anonymous_id = any(%s)",
            (tenant, wanted, tenant, wanted)).fetchall())
        return set(ids) | {r[0] for r in rows}

    def forget(self, tenant: str, ids: set[str]) -> int:
        wanted = sorted(ids)

        def forget(conn) -> int:
            with conn.transaction():
                gone = conn.execute("delete from high_level_events where tenant = %s and "
                                    "(anonymous_id = any(%s) or user_id = any(%s))", (tenant, wanted, wanted)).rowcount
                conn.execute("delete from identities where tenant = %s and (anonymous_id = any(%s) or user_id = any(%s))",
                             (tenant, wanted, wanted))
                return gone

        gone = self.db.run(forget)
        self.purge()
        return gone

    def purge(self) -> None:
        # dead row versions stay in the table's pages until VACUUM FULL rewrites them
        self.db.run(lambda conn: conn.execute("vacuum full high_level_events, identities"))

    def close(self) -> None:
        self.db.close()
