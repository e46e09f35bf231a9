"""The run log in PostgreSQL: every node's dashboard sees every run, and a run asked for on any
node is a row the active jobs node takes (``delete ... returning``: taken once, by one taker).

Runs record the node and the run-lease token they ran under; a new holder of the lease marks
the runs of older tokens that are still 'running' as interrupted (their node died, was paused or
cut off: they will never finish), and a late ``finish`` from such a node leaves them so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from beaconlake.backends.coordination.base import RUN_FIELDS, RUN_LEASE, Lease, RunLog, run_record, run_update
from beaconlake.units import now_ms

if TYPE_CHECKING:
    from beaconlake.backends.coordination.postgres import PostgresCoordination

RUNS_SCHEMA = """
create table if not exists coord_runs (
    run_id text primary key, node text, token bigint, trigger text not null, started_at bigint not null,
    finished_at bigint, status text not null, stage text, events bigint, new_files bigint, quarantined bigint,
    "analyze" text, error text, tenants jsonb, erasures bigint, erasures_waiting bigint
);
create index if not exists coord_runs_started on coord_runs (started_at desc);
create table if not exists coord_run_state (key text primary key, value jsonb not null);
create table if not exists coord_run_requests (id bigserial primary key, who text not null, tenant text);
"""
FIELDS = RUN_FIELDS
COLUMNS = ", ".join(f'"{f}"' for f in FIELDS)  # quoted: "analyze" is a keyword of PostgreSQL


class PostgresRunLog(RunLog):
    def __init__(self, owner: PostgresCoordination, keep_runs: int = 200) -> None:
        self.owner, self.db, self.keep_runs = owner, owner.db, keep_runs

    def start(self, run_id: str, trigger: str, tenants: list[str] | None = None, *, lease: Lease | None = None) -> None:
        self.db.run(lambda c: c.execute(
            "insert into coord_runs (run_id, node, token, trigger, started_at, status, stage, tenants) "
            "values (%s, %s, %s, %s, %s, 'running', 'erase', %s)",
            (run_id, self.owner.node, None if lease is None else lease.token, trigger, now_ms(),
             None if tenants is None else Jsonb(sorted(tenants)))))

    def update(self, run_id: str, **fields: Any) -> None:
        self._update(run_id, fields, only_running=False)

    def _update(self, run_id: str, fields: dict[str, Any], only_running: bool) -> None:
        fields = run_update(fields)
        if "tenants" in fields and fields["tenants"] is not None:
            fields["tenants"] = Jsonb(fields["tenants"])
        cols = ", ".join(f'"{k}" = %s' for k in fields)
        where = " and status = 'running'" if only_running else ""
        self.db.run(lambda c: c.execute(f"update coord_runs set {cols} where run_id = %s{where}",
                                        (*fields.values(), run_id)))

    def finish(self, run_id: str, status: str, **fields: Any) -> None:
        self._update(run_id, {"status": status, "finished_at": now_ms(), **fields}, only_running=True)
        self.db.run(lambda c: c.execute(
            "delete from coord_runs where run_id not in (select run_id from coord_runs order by started_at desc limit %s)",
            (self.keep_runs,)))

    def interrupt_stale(self) -> int:
        return self.db.run(lambda c: c.execute(
            "update coord_runs set status = 'interrupted', finished_at = %s, "
            "error = coalesce(error, 'node ' || coalesce(node, '?') || ' lost the run lease during this run "
            "(stopped, killed, paused or cut off); the run did not finish') "
            "where status = 'running' and token is distinct from (select token from coord_leases "
            "where name = %s and holder is not null and expires_at > clock_timestamp())",
            (now_ms(), RUN_LEASE)).rowcount)

    def set(self, key: str, value: Any) -> None:
        self.db.run(lambda c: c.execute(
            "insert into coord_run_state (key, value) values (%s, %s) on conflict (key) do update set value = excluded.value",
            (key, Jsonb(value))))

    def state(self) -> dict[str, Any]:
        return dict(self.db.run(lambda c: c.execute("select key, value from coord_run_state").fetchall()))

    def request(self, who: str = "requested", tenant: str | None = None) -> None:
        # like the local backend's one file per tenant: asking again before the run starts adds nothing,
        # so a "Run now" pressed (or scripted) a thousand times while no jobs node is up stays one row
        self.db.run(lambda c: c.execute(
            "insert into coord_run_requests (who, tenant) select %s, %s where not exists "
            "(select 1 from coord_run_requests where who = %s and tenant is not distinct from %s)",
            (who, tenant, who, tenant)))

    def requested(self, tenant: str | None = None) -> bool:
        if tenant is None:
            sql, args = "select exists (select 1 from coord_run_requests)", ()
        else:
            sql, args = "select exists (select 1 from coord_run_requests where tenant is null or tenant = %s)", (tenant,)
        return self.db.run(lambda c: c.execute(sql, args).fetchone()[0])

    def take_request(self) -> tuple[str, list[str] | None] | None:
        rows = self.db.run(lambda c: c.execute("delete from coord_run_requests returning id, who, tenant").fetchall())
        if not rows:
            return None
        rows.sort()
        triggers = [who or "requested" for _, who, _ in rows]
        tenants = None if any(t is None for _, _, t in rows) else sorted({t for _, _, t in rows})
        return ", ".join(dict.fromkeys(triggers)), tenants

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.db.run(lambda c: c.execute(
            f"select {COLUMNS} from coord_runs order by started_at desc, run_id desc limit %s",
            (limit,)).fetchall())
        return [run_record(dict(zip(FIELDS, r, strict=True))) for r in rows]

    def get(self, run_id: str) -> dict[str, Any]:
        row = self.db.run(lambda c: c.execute(f"select {COLUMNS} from coord_runs where run_id = %s",
                                              (run_id,)).fetchone())
        if row is None:
            raise KeyError(f"no run {run_id!r} in the run log")
        return run_record(dict(zip(FIELDS, row, strict=True)))
