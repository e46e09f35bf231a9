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
  data files meanwhile (their rows would be deleted unseen); deletes and maintenance do not stop it;
- an append of ``converted_files`` rows drops the rows another run committed first.

A refused retry is a ``ConvertError``: nothing of the batch is recorded as converted, so the next
run redoes it, which never duplicates rows (whole days are replaced). No lost rows, no duplicates.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from beaconlake.convert.errors import ConvertError

log = logging.getLogger(__name__)

# Tries of one commit, in all; between them a short random pause so two writers that failed
# together do not collide again.
COMMIT_ATTEMPTS = 5
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


def added_data(snapshots: list[Snapshot]) -> list[Snapshot]:
    """Those of ``snapshots`` that added data files."""
    return [s for s in snapshots if s.summary is not None and int(s.summary["added-data-files"] or 0) > 0]


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
        except CommitFailedException as exc:
            table.refresh()
            since = snapshots_since(table, base_id)
            why = recheck(table, since) if recheck is not None else None
            writers = sorted({s.summary.additional_properties.get("beaconlake.convert.run-id", "?") if s.summary else "?"
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


def no_new_data(table: Table, since: list[Snapshot]) -> str | None:
    """A whole-partition replace's recheck: refused when another writer added data files."""
    added = added_data(since)
    return f"{len(added)} of them added data files this replace would delete unseen" if added else None
