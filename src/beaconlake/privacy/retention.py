"""Retention: each tenant's data kept only as long as its ``[tenants.retention]`` says.

Run by the scheduler at the start of each run (after pending erasures), with the clock passed
in, so tests can move it. What goes, per tenant, by whole UTC days (the day a key or a partition
names, older than ``today - N days``):

* raw lake files (``raw_days``) and rejected-area files (``rejected_days``): deleted whole, by the
  day in their key; no file is rewritten;
* rows of the baked tables (``tables_days``): the partitions of those days, dropped through an
  Iceberg delete on the partition column (whole files; copy-on-write never needed);
* profiles of people not seen for ``profiles_inactive_days``, then the store compacted;
* snapshots (``snapshots_days``, the smallest over all tenants: the tables are shared) older than
  that expired, with the files only they need and the orphans older than convert's margin.

A retention pass writes one audit entry per tenant with what went. It holds the run lease, as an
erasure does (convert/fence.py), so no convert commit races its table deletes, and it stops
before its next delete once its node has lost the lease.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from contextlib import ExitStack
from datetime import date, timedelta

from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import And, EqualTo, LessThan

from beaconlake.backends.coordination import Lease
from beaconlake.backends.profiles import open_profiles
from beaconlake.backends.storage import Storage, open_storage
from beaconlake.config import Settings
from beaconlake.convert import tables
from beaconlake.convert.catalog import TableStore, iso_ms
from beaconlake.convert.lake import day_ms, ms_day
from beaconlake.convert.fence import FencedStore, run_lease
from beaconlake.convert.maintain import Maintenance, maintain_table
from beaconlake.convert.run import open_store
from beaconlake.lake import layout
from beaconlake.lake import privacy as records
from beaconlake.lake.privacy import AuditEntry
from beaconlake.privacy.forget import Busy
from beaconlake.units import DAY_MS, HOUR_MS

log = logging.getLogger(__name__)


def _drop_files(storage: Storage, prefix: str, parse, before: date) -> int:
    gone = 0
    for key in storage.list(prefix):
        parsed = parse(key)
        if parsed is not None and parsed.day < before:
            storage.delete(key)
            gone += 1
    return gone


def _drop_table_days(store: TableStore, tenant: str, before: date, run_id: str) -> int:
    """Drop the partitions of ``tenant``'s days before ``before`` from every baked table; returns
    the rows they held."""
    gone = 0
    for tdef in tables.BAKED:
        table = store.table(tdef.name)
        old = And(EqualTo("tenant", tenant), LessThan(tdef.day_column, iso_ms(day_ms(before))))
        gone += sum(f.file.record_count for f in store.day_files(tdef, tenant, 0, day_ms(before)))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Delete operation did not match any records")
            table.delete(old, snapshot_properties={"beaconlake.privacy.run-id": run_id})
    return gone


def enforce(settings: Settings, now_ms: int, tenants: set[str] | None = None,
            lease: Lease | None = None) -> dict[str, dict[str, int]]:
    """One retention pass at time ``now_ms``: what went, by tenant and kind."""
    chosen = [t for t in settings.tenants if tenants is None or t.id in tenants]
    kept = [t for t in chosen if any(v is not None for v in (
        t.retention.raw_days, t.retention.tables_days, t.retention.rejected_days,
        t.retention.profiles_inactive_days, t.retention.snapshots_days))]
    if not kept:
        return {}
    held = ExitStack()  # the run lease: the caller's (``lease``), or taken for this pass
    lease = held.enter_context(run_lease(settings, lease, lambda who: Busy(
        f"another run holds the run lease: {who}; retention waits for it")))
    run_id = "retention-" + uuid.uuid4().hex[:12]
    storage = open_storage(settings.storage)
    profiles = open_profiles(settings.profiles)
    today = ms_day(now_ms)
    out: dict[str, dict[str, int]] = {}
    try:
        store = FencedStore(open_store(settings, hold=True), lease)
        try:
            store.table(tables.EVENTS.name)
        except NoSuchTableError:
            store = None
        for t in kept:
            lease.check()
            r, gone = t.retention, {}
            if r.raw_days is not None:
                gone["raw_files"] = _drop_files(storage, layout.raw_prefix(t.id), layout.parse_raw,
                                                today - timedelta(days=r.raw_days))
            if r.rejected_days is not None:
                gone["rejected_files"] = _drop_files(storage, layout.rejected_prefix(t.id), layout.parse_rejected,
                                                     today - timedelta(days=r.rejected_days))
            if r.tables_days is not None and store is not None:
                gone["table_rows"] = _drop_table_days(store, t.id, today - timedelta(days=r.tables_days), run_id)
            if r.profiles_inactive_days is not None:
                gone["profiles"] = profiles.delete_inactive(t.id, now_ms - r.profiles_inactive_days * DAY_MS)
                if gone["profiles"]:
                    profiles.purge()
            out[t.id] = gone
        snapshot_days = [t.retention.snapshots_days for t in settings.tenants if t.retention.snapshots_days is not None]
        if snapshot_days and store is not None:
            lease.check()
            done = _expire_snapshots(store, min(snapshot_days), settings.convert.orphan_min_age_hours, now_ms)
            for gone in out.values():
                gone["snapshots_expired"] = done
        for tenant, gone in out.items():
            records.audit(storage, AuditEntry(request=run_id, tenant=tenant, what="retention", at_ms=now_ms,
                                              id_hashes=[], removed=gone))
            log.info("retention (%s): %s", tenant, ", ".join(f"{k} {v}" for k, v in gone.items()) or "nothing due")
        return out
    finally:
        profiles.close()
        held.close()


def _expire_snapshots(store: TableStore, days: int, orphan_min_age_hours: float, now_ms: int) -> int:
    """Expire snapshots older than ``days`` on every table; returns how many were expired."""
    done = Maintenance()
    for tdef in tables.ALL:
        maintain_table(store.table(tdef.name), days * DAY_MS, int(orphan_min_age_hours * HOUR_MS), now_ms, done)
    return done.snapshots_expired
