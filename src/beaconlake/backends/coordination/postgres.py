"""Coordination in PostgreSQL: the many-machine backend.

Leases are rows (name, holder, token, expires_at). Taking one is one statement that succeeds only
when the row is free or expired, and adds one to the token; renewing is one statement that
succeeds only while the row still names this holder and token and has not expired. Every
expiry is on the server's clock (``clock_timestamp()``), never a node's, so nodes whose clocks
disagree still agree on who holds a lease.

Fencing: ``put(key, value, lease)`` is one statement that writes only if the lease row still
holds this token, unexpired, taking a share lock on it, so a takeover (which updates that row)
waits for the write or the write sees the takeover: a paused former leader that wakes up cannot
write over its successor. The stored value keeps the token it was written under, and a write
under a smaller token than the stored one is refused too (tokens only grow).

``Lease.check()`` (before an Iceberg commit, which cannot be fenced inside this database) asks
the server how long the lease has left and refuses when that is less than a third of the ttl:
the commit that follows has that long to land inside the lease. It also keeps a local deadline
(the ttl counted from the moment the last renewal was sent) so a node cut off from the server
refuses at once rather than after a connect timeout.
"""

from __future__ import annotations

import json
import time
from typing import Any

from psycopg.types.json import Jsonb

from beaconlake.backends.coordination.base import (
    Capabilities,
    Coordination,
    Lease,
    LeaseLost,
    RunLog,
)
from beaconlake.backends.coordination.postgres_runs import RUNS_SCHEMA, PostgresRunLog
from beaconlake.backends.coordination.settings import PostgresCoordinationSettings
from beaconlake.backends.pgconn import PgConnection
from beaconlake.errors import BackendUnavailable

SCHEMA = """
create table if not exists coord_leases (
    name text primary key, holder text, token bigint not null, expires_at timestamptz not null
);
create table if not exists coord_kv (
    key text primary key, value jsonb not null, token bigint, updated_at timestamptz not null
);
create table if not exists coord_nodes (
    node text primary key, role text not null, seen_at timestamptz not null, info jsonb not null
);
""" + RUNS_SCHEMA
LOCK_ID = 7353  # serialises the schema's creation between processes (pgconn)

# Both at once: still held by us, and unexpired by the server's clock.
LIVE = "name = %(name)s and holder = %(holder)s and token = %(token)s and expires_at > clock_timestamp()"


class PostgresLease(Lease):
    def __init__(self, owner: PostgresCoordination, name: str, token: int, ttl_secs: float, sent: float) -> None:
        self.owner, self.name, self.token, self.ttl_secs = owner, name, token, ttl_secs
        self.holder = owner.node
        self.margin_secs = ttl_secs / 3
        self.deadline = sent + ttl_secs  # monotonic: the lease cannot outlive this, whatever the server says
        self.lost: str | None = None

    def _params(self) -> dict[str, Any]:
        return {"name": self.name, "holder": self.holder, "token": self.token, "ttl": self.ttl_secs}

    def renew(self) -> bool:
        if self.lost is not None:
            return False
        sent = time.monotonic()
        row = self.owner.db.run(lambda c: c.execute(
            "update coord_leases set expires_at = clock_timestamp() + make_interval(secs => %(ttl)s) "
            f"where {LIVE} returning token", self._params()).fetchone())
        if row is None:
            self.lost = f"lease {self.name!r} (token {self.token}) passed to another holder or expired"
            return False
        self.deadline = sent + self.ttl_secs
        return True

    def check(self) -> None:
        if self.lost is not None:
            raise LeaseLost(self.lost)
        if time.monotonic() > self.deadline - self.margin_secs:
            raise LeaseLost(f"lease {self.name!r} (token {self.token}) was not renewed in time: less than "
                            f"{self.margin_secs:.1f} s of its {self.ttl_secs:g} s ttl left")
        try:
            row = self.owner.db.run(lambda c: c.execute(
                "select holder, token, extract(epoch from expires_at - clock_timestamp())::float8 "
                "from coord_leases where name = %s", (self.name,)).fetchone())
        except BackendUnavailable as exc:
            raise LeaseLost(f"lease {self.name!r} (token {self.token}) cannot be confirmed: {exc}") from exc
        if row is None or (row[0], row[1]) != (self.holder, self.token):
            who = "nobody" if row is None or row[0] is None else f"{row[0]} (token {row[1]})"
            self.lost = f"lease {self.name!r} (token {self.token}) is now held by {who}"
            raise LeaseLost(self.lost)
        if row[2] < self.margin_secs:
            raise LeaseLost(f"lease {self.name!r} (token {self.token}) has {row[2]:.1f} s left, less than the "
                            f"{self.margin_secs:.1f} s a commit may take")

    def release(self) -> None:
        if self.lost is None:
            self.lost = f"lease {self.name!r} (token {self.token}) was released"
            try:
                self.owner.db.run(lambda c: c.execute(
                    "update coord_leases set holder = null, expires_at = clock_timestamp() "
                    "where name = %(name)s and holder = %(holder)s and token = %(token)s", self._params()))
            except BackendUnavailable:
                pass  # it expires by itself within its ttl


class PostgresCoordination(Coordination):
    capabilities = Capabilities(shared=True)

    def __init__(self, dsn: str, node: str) -> None:
        self.node = node
        self.db = PgConnection(dsn, SCHEMA, lock_id=LOCK_ID)

    @classmethod
    def from_settings(cls, settings: PostgresCoordinationSettings, *, run_dir: Any, node: str) -> PostgresCoordination:
        return cls(settings.url, node)

    def acquire(self, name: str, ttl_secs: float) -> Lease | None:
        sent = time.monotonic()
        # one statement: the row is locked while the condition is checked, so two nodes cannot both win
        row = self.db.run(lambda c: c.execute(
            "insert into coord_leases as l (name, holder, token, expires_at) "
            "values (%(name)s, %(holder)s, 1, clock_timestamp() + make_interval(secs => %(ttl)s)) "
            "on conflict (name) do update set holder = excluded.holder, token = l.token + 1, "
            "expires_at = excluded.expires_at where l.holder is null or l.expires_at <= clock_timestamp() "
            "returning token", {"name": name, "holder": self.node, "ttl": ttl_secs}).fetchone())
        return None if row is None else PostgresLease(self, name, row[0], ttl_secs, sent)

    def holder(self, name: str) -> dict[str, Any] | None:
        row = self.db.run(lambda c: c.execute(
            "select holder, token, (extract(epoch from expires_at) * 1000)::bigint from coord_leases "
            "where name = %s and holder is not null and expires_at > clock_timestamp()", (name,)).fetchone())
        return None if row is None else {"holder": row[0], "token": row[1], "expires_ms": row[2]}

    def get(self, key: str) -> Any | None:
        row = self.db.run(lambda c: c.execute("select value from coord_kv where key = %s", (key,)).fetchone())
        return None if row is None else row[0]

    def put(self, key: str, value: Any, lease: Lease | None = None) -> None:
        data = Jsonb(json.loads(json.dumps(value)))  # what a reader gets back: plain JSON
        if lease is None:
            self.db.run(lambda c: c.execute(
                "insert into coord_kv (key, value, token, updated_at) values (%s, %s, null, clock_timestamp()) "
                "on conflict (key) do update set value = excluded.value, token = null, updated_at = excluded.updated_at",
                (key, data)))
            return
        if isinstance(lease, PostgresLease) and lease.lost is not None:
            raise LeaseLost(lease.lost)
        params = {"name": lease.name, "holder": lease.holder, "token": lease.token, "key": key, "value": data}
        row = self.db.run(lambda c: c.execute(
            f"with live as (select token from coord_leases where {LIVE} for share) "
            "insert into coord_kv as kv (key, value, token, updated_at) "
            "select %(key)s, %(value)s, token, clock_timestamp() from live "
            "on conflict (key) do update set value = excluded.value, token = excluded.token, "
            "updated_at = excluded.updated_at where kv.token is null or kv.token <= excluded.token "
            "returning 1", params).fetchone())
        if row is None:
            raise LeaseLost(f"write of {key!r} refused: lease {lease.name!r} (token {lease.token}) is no longer "
                            "held by this node, or a later holder already wrote it")

    def heartbeat(self, role: str, info: dict[str, Any]) -> None:
        self.db.run(lambda c: c.execute(
            "insert into coord_nodes (node, role, seen_at, info) values (%s, %s, clock_timestamp(), %s) "
            "on conflict (node) do update set role = excluded.role, seen_at = excluded.seen_at, info = excluded.info",
            (self.node, role, Jsonb(info))))

    def nodes(self) -> list[dict[str, Any]]:
        rows = self.db.run(lambda c: c.execute(
            "select node, role, (extract(epoch from seen_at) * 1000)::bigint, "
            "(extract(epoch from clock_timestamp() - seen_at) * 1000)::bigint, info "
            "from coord_nodes order by seen_at desc").fetchall())
        return [{"node": r[0], "role": r[1], "seen_ms": r[2], "age_ms": r[3], "info": r[4]} for r in rows]

    def run_log(self, keep_runs: int = 200) -> RunLog:
        return PostgresRunLog(self, keep_runs)

    def close(self) -> None:
        self.db.close()
