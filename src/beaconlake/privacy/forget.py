"""Carrying out the pending erasure requests: one batched pass over every store.

Per tenant with pending requests, in this order (each step idempotent, so a pass cut short is
simply run again: the request stays pending until its ``done`` record is written):

1. the identity graph of each request (``graph.py``): links from one scan of the raw lake's id
   columns, convert's ``identities`` table, the profile store and the high-level index;
2. the spool's sealed segments (``ingest/forget.py``), before the raw lake, so what a deliverer
   delivers from a segment while it is being scrubbed is caught by step 3;
3. the raw lake: only the files that hold one of the ids, rewritten (``lakefiles.py``);
4. the rejected area: rows whose excerpt or error names one of the ids;
5. the Iceberg tables: copy-on-write of the files holding them, then (once per pass, all tenants)
   every older snapshot expired and the files only they referenced deleted (``tables.py``);
6. the profile store and the high-level index, then their files compacted (``purge``);
7. the detector checkpoint of the realtime stage;
8. the suppression entry widened to every id found, the ``done`` record, the ``carried_out``
   audit entry, and the pending request (the one record with the ids in clear) deleted.

All of a tenant's pending requests share one pass: the raw scan, the table rewrites and the
expiry are paid once for the batch. The pass holds the run lease (convert/fence.py), as convert
does: no convert commit can race the table rewrites, no convert output is an orphan in the
making, and a pass whose node lost the lease stops before its next table commit.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import EqualTo

from beaconlake.backends.coordination import Lease
from beaconlake.backends.highlevel import open_highlevel
from beaconlake.backends.profiles import open_profiles
from beaconlake.backends.storage import Storage, open_storage
from beaconlake.config import Settings
from beaconlake.convert import tables as convert_tables
from beaconlake.convert.catalog import TableStore
from beaconlake.convert.fence import FencedStore, run_lease
from beaconlake.convert.run import open_store
from beaconlake.errors import BeaconlakeError
from beaconlake.ingest.forget import scrub_spool
from beaconlake.lake import layout
from beaconlake.lake import privacy as records
from beaconlake.lake.privacy import AuditEntry, ErasureDone, ErasureRequest, IdHasher, Suppression, id_hasher
from beaconlake.privacy import lakefiles
from beaconlake.privacy import tables as privacy_tables
from beaconlake.privacy.graph import Graph
from beaconlake.privacy.requests import pending, prune_suppressions
from beaconlake.realtime.consumer import forget_in_checkpoint
from beaconlake.units import DAY_MS, now_ms

log = logging.getLogger(__name__)


class Busy(BeaconlakeError):
    """Another run holds the run lease; the pass is tried again later."""


@dataclass
class Carried:
    """One request carried out."""

    request: ErasureRequest
    ids_found: int
    removed: dict[str, int]
    seconds: float


@dataclass
class Pass:
    carried: list[Carried] = field(default_factory=list)
    waiting: int = 0  # requests too recent: a deliverer may not have their suppression entry yet
    # requests left pending because their identity graph is over privacy.max_person_ids: (request, ids linked)
    too_wide: list[tuple[ErasureRequest, int]] = field(default_factory=list)
    damaged_segments: list[str] = field(default_factory=list)  # spool segments that could not be scrubbed


def _identity_links(store: TableStore, tenant: str) -> list[tuple[str, str]]:
    try:
        t = store.table(convert_tables.IDENTITIES.name).scan(
            row_filter=EqualTo("tenant", tenant), selected_fields=("anonymous_id", "user_id")).to_arrow()
    except NoSuchTableError:
        return []
    return list(zip(t["anonymous_id"].to_pylist(), t["user_id"].to_pylist()))


def _tables_exist(store: TableStore) -> bool:
    try:
        store.table(convert_tables.EVENTS.name)
        return True
    except NoSuchTableError:
        return False


class _TenantPass:
    def __init__(self, settings: Settings, storage: Storage, store: TableStore | None, profiles, index,
                 hasher: IdHasher, tenant: str, staging: Path, run_id: str) -> None:
        self.settings, self.storage, self.store = settings, storage, store
        self.profiles, self.index, self.hasher = profiles, index, hasher
        self.tenant, self.staging, self.run_id = tenant, staging, run_id
        self.too_wide: list[tuple[ErasureRequest, int]] = []

    def identities(self, requests: list[ErasureRequest]) -> tuple[dict[str, set[str]], list[lakefiles.FileIds], list[str]]:
        """Each request's ids with every id linked to them; the raw files' ids; profile person ids."""
        files, pairs = lakefiles.scan_raw(self.storage, self.tenant)
        graph = Graph()
        graph.link_all(pairs)
        if self.store is not None:
            graph.link_all(_identity_links(self.store, self.tenant))
        out, persons = {}, []
        for req in requests:
            ids = graph.component(req.ids)
            for _round in range(2):  # a profile or the index may link ids the lake no longer has
                found, people = self.profiles.linked_ids(self.tenant, ids)
                ids = graph.component(found | self.index.linked_ids(self.tenant, found))
            persons += people
            out[req.id] = ids
        return out, files, persons

    def run(self, requests: list[ErasureRequest]) -> tuple[dict[str, set[str]], dict[str, int], list[str], float]:
        """Every step but the expiry and the records: (ids by request, removed by store, damaged
        spool segments, seconds). Requests whose graph is too wide are taken out of ``requests``
        (and listed in ``self.too_wide``)."""
        started = time.monotonic()
        by_request, files, persons = self.identities(requests)
        limit = self.settings.privacy.max_person_ids
        self.too_wide = [(r, len(by_request[r.id])) for r in requests if len(by_request[r.id]) > limit]
        for req, count in self.too_wide:
            log.error("erasure %s (%s) not carried out: its ids link %d ids, over privacy.max_person_ids = %d "
                      "(a shared user id?); ask with the exact ids, or raise the limit", req.id, self.tenant, count, limit)
            requests.remove(req)
            del by_request[req.id]
        if not requests:
            return by_request, {}, [], time.monotonic() - started
        persons = [p for p in persons if any(p in ids for ids in by_request.values())]
        ids = set().union(*by_request.values())
        removed: dict[str, int] = {}
        frozen = frozenset(ids)
        removed["spool"], damaged = scrub_spool(
            self.settings.spool_path, {self.tenant}, lambda _t, a, u: a in frozen or u in frozen, frozen)
        level = self.settings.delivery.zstd_level
        removed["raw"], sizes = lakefiles.forget_raw(self.storage, lakefiles.holding(files, ids), ids, level)
        removed["raw_files_rewritten"] = len(sizes)
        removed["rejected"] = lakefiles.forget_rejected(self.storage, self.tenant, ids, level)
        if self.store is not None:
            for tdef in privacy_tables.FORGETTABLE:
                removed[f"table_{tdef.name}"] = privacy_tables.forget_table(
                    self.store, tdef, self.tenant, ids, self.staging, self.run_id)
            privacy_tables.record_new_sizes(self.store, sizes, self.run_id)
        removed["profiles"] = self.profiles.delete(self.tenant, sorted(set(persons)))
        self.profiles.purge()
        removed["highlevel_index"] = self.index.forget(self.tenant, ids)
        removed["realtime_people"] = forget_in_checkpoint(self.settings, self.tenant, ids)
        return by_request, removed, damaged, time.monotonic() - started

    def finish(self, requests, by_request, removed, damaged, seconds) -> Pass:
        """Record the requests as carried out (once the expiry is done too)."""
        out = Pass(damaged_segments=damaged)
        at = now_ms()
        batch = len(requests)
        for req in requests:
            every = sorted(self.hasher(i) for i in by_request[req.id])
            asked = sorted(self.hasher(i) for i in req.ids)
            until = req.requested_at_ms + int(self.settings.privacy.suppression_days * DAY_MS)
            records.put(self.storage, layout.suppress_key(self.tenant, req.id),
                        Suppression(request=req.id, id_hashes=every, until_ms=until))
            counts = {**removed, "requests_in_batch": batch}
            records.put(self.storage, layout.erasure_key(layout.DONE, self.tenant, req.id), ErasureDone(
                id=req.id, tenant=self.tenant, id_hashes=asked, requested_at_ms=req.requested_at_ms,
                carried_out_at_ms=at, ids_found=len(every), removed=counts))
            records.audit(self.storage, AuditEntry(request=req.id, tenant=self.tenant, what="carried_out", at_ms=at,
                                                   id_hashes=every, removed=counts, seconds=round(seconds, 3)))
            self.storage.delete(layout.erasure_key(layout.PENDING, self.tenant, req.id))
            out.carried.append(Carried(req, len(every), counts, seconds))
            log.info("erasure %s (%s): %d id(s) forgotten, %s", req.id, self.tenant, len(every),
                     ", ".join(f"{k} {v}" for k, v in counts.items()))
        return out


def carry_out(settings: Settings, tenants: set[str] | None = None, wait: bool = True, lease: Lease | None = None) -> Pass:
    """Carry out every pending erasure request (of ``tenants``), batched per tenant.

    A request younger than ``privacy.suppression_refresh_secs`` may not be in every deliverer's
    suppression list yet: with ``wait`` the pass waits for it, else it is left for the next pass.
    A pass over every tenant also deletes the suppression entries whose time is over."""
    storage = open_storage(settings.storage)
    if tenants is None:
        prune_suppressions(storage)
    todo = pending(storage, tenants)
    result = Pass()
    if not todo:
        return result
    refresh_ms = int(settings.privacy.suppression_refresh_secs * 1000)
    youngest = max(r.requested_at_ms for r in todo)
    if wait and now_ms() < youngest + refresh_ms:
        time.sleep((youngest + refresh_ms - now_ms()) / 1000)
    ready = [r for r in todo if r.requested_at_ms + refresh_ms <= now_ms()]
    result.waiting = len(todo) - len(ready)
    if not ready:
        return result
    run_dir = Path(settings.data_dir) / "run"
    held = ExitStack()  # the run lease: the caller's (``lease``), or taken for this pass
    lease = held.enter_context(run_lease(settings, lease, lambda who: Busy(
        f"another run holds the run lease: {who}; the erasure waits for it")))
    run_id = "forget-" + uuid.uuid4().hex[:12]
    staging = run_dir / "privacy-staging" / run_id
    profiles = open_profiles(settings.profiles)
    index = open_highlevel(settings.highlevel)
    try:
        store = FencedStore(open_store(settings, hold=True), lease)
        store = store if _tables_exist(store) else None
        hasher = id_hasher(storage, settings.privacy.id_salt or None)
        steps = []
        for tenant in sorted({r.tenant for r in ready}):
            mine = [r for r in ready if r.tenant == tenant]
            lease.check()
            step = _TenantPass(settings, storage, store, profiles, index, hasher, tenant, staging, run_id)
            done = step.run(mine)
            result.too_wide += step.too_wide
            if mine:
                steps.append((step, mine, *done))
        if store is not None:
            lease.check()
            expired = privacy_tables.expire_all(store)
            log.info("erasure pass %s: %d snapshot(s) expired, %d file(s) deleted", run_id,
                     expired.snapshots_expired, expired.files_deleted + expired.orphans_deleted)
            if expired.failures:
                raise BeaconlakeError(f"erasure pass {run_id}: could not delete {expired.failures[0]} "
                                      f"(and {len(expired.failures) - 1} more); the next pass tries again")
        started = time.monotonic()
        for step, mine, by_request, removed, damaged, seconds in steps:
            one = step.finish(mine, by_request, removed, damaged, seconds + time.monotonic() - started)
            result.carried += one.carried
            result.damaged_segments += one.damaged_segments
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        profiles.close()
        index.close()
        held.close()
