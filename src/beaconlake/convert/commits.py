"""Committing to a table another writer may commit to at the same time.

Iceberg commits are optimistic: a commit names the snapshot it was built on, and the catalog
refuses it (pyiceberg's ``CommitFailedException``) when the table moved on meanwhile: another
node's convert run, an erasure, retention, maintenance, or another tool. ``commit_with_retry``
then reloads the table and, when the change still makes sense on the new snapshot, builds and
commits it again, a bounded number of times. What "still makes sense" is the caller's
``recheck``, given the snapshots committed since the one its change was built on:

- a swap of exact data files (``replace_files``) goes on only while every file it deletes is
  still in the table (another writer that rewrote one of them changed rows this swap never saw);
- a whole-partition replace (``replace_days``, the identity map) goes on only when nothing added
  data files to those partitions meanwhile (their rows would be deleted unseen); deletes,
  maintenance and other partitions' changes do not stop it;
- an append of ``converted_files`` rows drops the rows another run committed first.

pyiceberg (0.10+) can retry by itself, but rebuilds a commit without such checks (it appended
``converted_files`` rows another run had just committed): beaconlake's tables turn it off
(``commit.retry.num-retries = 0``, catalog.py). Its ``ValidationException`` (a rebuilt overwrite
it refused) is handled as a conflict too, for tables made before that property.

A refused retry is a ``ConvertError``: nothing of the batch is recorded as converted, so the next
run redoes it, which never duplicates rows (whole days are replaced). No lost rows, no duplicates.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.manifest import DataFile, ManifestContent, ManifestEntryStatus
from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot

from beaconlake.convert.errors import ConvertError

log = logging.getLogger(__name__)

# Tries of one commit, in all; between them a short random pause so two writers that failed
# together do not collide again.
COMMIT_ATTEMPTS = 5
RUN_PROPERTY = "beaconlake.convert.run-id"  # the snapshot property naming the run that committed it
RETRY_PAUSE_SECS = (0.05, 0.5)

T = TypeVar("T")


def snapshots_since(table: Table, base_id: int | None) -> list[Snapshot]:
    """The snapshots of the table's current branch committed after ``base_id`` (newest first);
    every one when ``base_id`` is None or no longer an ancestor (expired)."""
    out = []
    snapshot = table.current_snapshot()
    while snapshot is not None and snapshot.snapshot_id != base_id:
        out.append(snapshot)
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return out


def added_files(table: Table, since: list[Snapshot]) -> list[DataFile]:
    """The data files the snapshots ``since`` added (still live or not)."""
    ids = {s.snapshot_id for s in since}
    current = table.current_snapshot()
    out = []
    for manifest in current.manifests(table.io) if current is not None and ids else []:
        if manifest.content != ManifestContent.DATA or manifest.added_snapshot_id not in ids:
            continue
        out.extend(e.data_file for e in manifest.fetch_manifest_entry(table.io, discard_deleted=False)
                   if e.status == ManifestEntryStatus.ADDED and e.snapshot_id in ids)
    return out


def commit_with_retry(
    name: str,
    table: Table,
    commit: Callable[[Table], T],
    recheck: Callable[[Table, list[Snapshot]], str | None] | None = None,
    attempts: int = COMMIT_ATTEMPTS,
) -> T:
    """``commit(table)``; on a conflict, ``table`` is refreshed (in place: a held table stays the
    one the run uses) and, unless ``recheck(table, snapshots since the base)`` says why not, the
    commit is built again on the new snapshot. ``commit`` must build everything from ``table``."""
    for attempt in range(1, attempts + 1):
        base = table.current_snapshot()
        base_id = base.snapshot_id if base is not None else None
        try:
            return commit(table)
        except (CommitFailedException, ValidationException) as exc:
            table.refresh()
            since = snapshots_since(table, base_id)
            why = recheck(table, since) if recheck is not None else None
            writers = sorted({(s.summary.additional_properties if s.summary else {}).get(RUN_PROPERTY, "?")
                              for s in since})
            if why is not None:
                raise ConvertError(f"{name}: another writer committed meanwhile ({len(since)} snapshot(s), run(s) "
                                   f"{', '.join(writers)}) and {why}; nothing of this batch is recorded: "
                                   "the next convert run redoes it") from exc
            if attempt == attempts:
                raise ConvertError(f"{name}: the commit conflicted {attempts} times with other writers "
                                   f"(last: {exc}); the next convert run redoes it") from exc
            log.warning("%s: commit conflict with %d newer snapshot(s) (%s); retrying on the new snapshot (%d/%d)",
                        name, len(since), exc, attempt, attempts - 1)
            time.sleep(random.uniform(*RETRY_PAUSE_SECS))
    raise AssertionError("unreachable")


class _Transaction(Transaction):
    """pyiceberg's transaction, whose ``table_metadata`` is built once per staged update.

    pyiceberg rebuilds it on every read (a deep copy of the table's metadata with the staged
    updates replayed), and a commit reads it for each file it adds and each manifest it writes:
    about 120 copies in an incremental convert run, a sixth of its time. Staging an update
    replaces the ``_updates`` tuple, and a commit replaces the table's metadata, so the kept copy
    is valid while both are the same objects."""

    _memo: tuple[object, object, TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        memo = self._memo
        if memo is None or memo[0] is not self._table.metadata or memo[1] is not self._updates:
            memo = self._memo = (self._table.metadata, self._updates, super().table_metadata)
        return memo[2]


def transaction(table: Table) -> Transaction:
    """``table.transaction()``, reading its staged metadata without a copy per read."""
    return _Transaction(table)


def no_new_data(where: Callable[[DataFile], bool]) -> Callable[[Table, list[Snapshot]], str | None]:
    """A partition replace's recheck: refused when another writer added a data file ``where``
    says is in the partitions it replaces (its rows would be deleted unseen)."""

    def recheck(table: Table, since: list[Snapshot]) -> str | None:
        added = [f for f in added_files(table, since) if where(f)]
        return (f"{len(added)} data file(s) it added are in the partitions this replace would delete unseen, "
                f"e.g. {added[0].file_path}") if added else None

    return recheck
