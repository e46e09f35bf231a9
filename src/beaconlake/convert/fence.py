"""Runs that change the tables hold the run lease, and check it right before every commit.

A run (convert, retention, an erasure pass; the scheduler's or one from a command line, on any
node) holds ``RUN_LEASE`` from the coordination seam for its whole length, renewed in the
background: runs never overlap anywhere in the deployment. An Iceberg commit cannot be made
conditional on the lease inside the catalog, so every commit is preceded by ``lease.check()``,
which refuses unless the lease is ours with a third of its ttl still to go (the commit's time
budget). A node paused past its lease (GC, SIGSTOP, a VM migration) or cut off from the
coordination service therefore stops at its next commit instead of writing over the run of the
node that took over.

``FencedStore`` wraps a ``TableStore`` so the commits made deep inside a run (convert/job.py,
convert/increment.py, privacy/tables.py, maintenance) are checked without those modules knowing
of leases, at two points: before each of the store's commit methods (so a run that lost its
lease does not even write the data files of its next commit), and before every attempt of the
catalog's ``commit_table``. The second matters because pyiceberg retries a commit that lost a
race on the new snapshot: without it, a node paused inside a commit would, once resumed, find
the catalog changed by its successor and land its commit on top of the successor's, duplicating
what the successor wrote. What is left is the time between the check and the catalog's own
compare-and-swap inside one ``commit_table`` attempt (loading the table's current metadata and
writing the new metadata file): a pause exactly there, longer than the lease, would let that one
commit land.

That window closes when the catalog is an Iceberg SQL catalog in the coordination database
itself (``catalog.uri`` and ``coordination.url`` naming one PostgreSQL database, the
recommended cluster setup): the catalog's compare-and-swap ``UPDATE iceberg_tables`` is then
preceded, in its own transaction, by a ``SELECT ... FOR SHARE`` of the lease row that must still
hold this token unexpired. The commit and the fence are one transaction: a commit under a lost
lease is rolled back, and a takeover (which updates the lease row) waits for a commit in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from beaconlake.backends.coordination import RUN_LEASE, Lease, LeaseLost, open_coordination
from beaconlake.config import Settings

# TableStore's methods that commit to the catalog
COMMITS = frozenset({"ensure", "replace_days", "replace_files", "replace_tenant", "record_converted", "drop_tenant"})


class FencedStore:
    """``store`` whose commits check ``lease`` first (LeaseLost once the lease is gone)."""

    def __init__(self, store: Any, lease: Lease) -> None:
        self._store, self._check = store, lease.check
        _fence_catalog(store.catalog, lease.check)
        self.in_transaction = _fence_sql_catalog(store.catalog, lease)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in COMMITS:
            return attr

        def fenced(*args: Any, **kwargs: Any) -> Any:
            self._check()
            return attr(*args, **kwargs)

        return fenced


def _fence_catalog(catalog: Any, check: Callable[[], None]) -> None:
    """Check the lease before every ``commit_table`` of ``catalog``, retries included: every Table
    loaded through it commits through this very object (``table.catalog``), so the wrapper is set
    on the instance, for this run's catalog only."""
    commit = catalog.commit_table

    def commit_table(*args: Any, **kwargs: Any) -> Any:
        check()
        return commit(*args, **kwargs)

    catalog.commit_table = commit_table


# The lease row, still this holder's under this token, unexpired; locked until the commit ends.
SQL_FENCE = ("select 1 from coord_leases where name = %(name)s and holder = %(holder)s and token = %(token)s "
             "and expires_at > clock_timestamp() for share")


def _fence_sql_catalog(catalog: Any, lease: Lease) -> bool:
    """Put the lease check into the SQL catalog's commit transaction when the catalog's database
    holds this very lease (see the module docstring); True when it does."""
    engine = getattr(catalog, "engine", None)
    if engine is None or engine.dialect.name != "postgresql":
        return False
    from sqlalchemy import event, text

    params = {"name": lease.name, "holder": lease.holder, "token": lease.token}
    with engine.connect() as conn:  # the same store: this lease's row is there (a table of that name is not enough)
        if conn.execute(text("select to_regclass('coord_leases') is not null")).scalar() is not True:
            return False
        same = conn.execute(text("select 1 from coord_leases where name = :name and holder = :holder and token = :token"),
                            params).first()
    if same is None:
        return False

    def fence(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip()[:21].lower() == "update iceberg_tables":
            cursor.execute(SQL_FENCE, params)
            if cursor.fetchone() is None:
                raise LeaseLost(f"commit refused by the catalog database: lease {lease.name!r} (token {lease.token}) "
                                "is no longer held by this node")

    event.listen(engine, "before_cursor_execute", fence)
    return True


@contextmanager
def run_lease(settings: Settings, lease: Lease | None, busy: Callable[[str], Exception]) -> Iterator[Lease]:
    """``lease`` when the caller's run already holds it; else the run lease, taken for this block
    (renewed in the background, released at its end), or ``busy(who holds it)`` raised."""
    if lease is not None:
        yield lease
        return
    coord = open_coordination(settings.coordination, run_dir=settings.run_path, node=settings.node.name)
    try:
        held = coord.hold(RUN_LEASE, settings.coordination.lease_secs)
        if held is None:
            h = coord.holder(RUN_LEASE)
            raise busy("another process" if h is None else f"node {h['holder']!r} (lease token {h['token']})")
        try:
            yield held
        finally:
            held.release()
    finally:
        coord.close()
