"""Keeping the warehouse bounded: expire old snapshots, delete what only they needed, and remove
orphan files.

Every convert commit makes new snapshots and leaves the files it replaced behind, readable
through the older snapshots (time travel), so without this the warehouse only grows. Three
kinds of file go, per table:

* **snapshots** older than ``snapshot_retention_hours``, except each branch's current one
  (pyiceberg's ``expire_snapshots``, which only edits the metadata);
* **files only expired snapshots needed**: the data files, manifests and manifest lists live in
  an expired snapshot and in no retained one. They were committed once and are unreachable now,
  so they go at once, whatever their age;
* **orphans**: files under the table's location that no retained snapshot and no metadata file of
  the log references (what a killed run wrote before its commit), older than
  ``orphan_min_age_hours``. The age is the safety margin: a file an in-flight commit has written
  but not yet committed is younger than that, and is left alone.

Nothing a retained snapshot can read is ever deleted: every deletion is "listed minus reachable
from every retained snapshot", computed after the expiry commit. Deletions go through the
table's FileIO (local folder or object store), so they follow the warehouse wherever it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow.fs as pafs
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.table import Table

from beaconlake.convert import tables
from beaconlake.convert.catalog import TableStore
from beaconlake.units import HOUR_MS

log = logging.getLogger(__name__)


@dataclass
class Maintenance:
    """What one maintenance pass removed, over every table."""

    snapshots_expired: int = 0
    files_deleted: int = 0  # files only expired snapshots needed
    orphans_deleted: int = 0
    bytes_deleted: int = 0
    failures: list[str] = field(default_factory=list)  # files that could not be deleted (retried next time)


def reachable(table: Table) -> set[str]:
    """Locations every retained snapshot of ``table`` needs to be read: manifest lists, manifests,
    and the data and delete files live in them; plus the table's metadata files."""
    io = table.io
    found: set[str] = {table.metadata_location, *(entry.metadata_file for entry in table.metadata.metadata_log)}
    seen_manifests: set[str] = set()
    for snapshot in table.snapshots():
        found.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(io):
            if manifest.manifest_path in seen_manifests:
                continue  # manifests are shared between snapshots: each is read once
            seen_manifests.add(manifest.manifest_path)
            found.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
                found.add(entry.data_file.file_path)
    for stats in (*table.metadata.statistics, *table.metadata.partition_statistics):
        found.add(stats.statistics_path)
    return found


def _fs_path(location: str) -> str:
    return PyArrowFileIO.parse_location(location)[2]


def _listing(table: Table) -> dict[str, tuple[str, int, float]] | None:
    """Every file under the table's location: fs path -> (location as the table spells it, size,
    modification time in epoch seconds). None when the FileIO cannot list (not pyarrow's)."""
    if not isinstance(table.io, PyArrowFileIO):
        return None
    scheme, netloc, root = PyArrowFileIO.parse_location(table.location())
    fs = table.io.fs_by_scheme(scheme, netloc)
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True, recursive=True))
    prefix = "file://" if scheme == "file" else f"{scheme}://"
    out = {}
    for info in infos:
        if info.type == pafs.FileType.File:
            mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
            out[info.path] = (prefix + info.path, info.size or 0, mtime)
    return out


def _delete(table: Table, location: str, done: Maintenance) -> bool:
    try:
        table.io.delete(location)
        return True
    except FileNotFoundError:
        return False  # gone already (a commit deletes metadata files beyond the log's length itself)
    except OSError as exc:
        done.failures.append(f"{location}: {exc}")
        return False


def maintain_table(table: Table, retention_ms: int, orphan_min_age_ms: int, now_ms: int, done: Maintenance) -> None:
    before = reachable(table)
    current = {ref.snapshot_id for ref in table.metadata.refs.values()}
    expired = [s.snapshot_id for s in table.snapshots()
               if s.timestamp_ms < now_ms - retention_ms and s.snapshot_id not in current]
    if expired:
        table.maintenance.expire_snapshots().by_ids(expired).commit()
        table = table.refresh()
        done.snapshots_expired += len(expired)
    after = reachable(table)
    listed = _listing(table)
    sizes = {path: size for path, (_loc, size, _m) in (listed or {}).items()}
    after_paths = {_fs_path(loc) for loc in after}
    for location in sorted(before - after):
        path = _fs_path(location)
        if path in after_paths:
            continue  # spelled differently, same file: still needed
        if _delete(table, location, done):
            done.files_deleted += 1
            done.bytes_deleted += sizes.get(path, 0)
    if listed is None:
        log.warning("%s: its FileIO cannot list files; orphan files are not removed", table.name())
        return
    cutoff_s = (now_ms - orphan_min_age_ms) / 1000
    for path, (location, size, mtime) in sorted(listed.items()):
        if path in after_paths or mtime >= cutoff_s or _fs_path(location) in after_paths:
            continue
        if not _delete(table, location, done):
            continue
        done.orphans_deleted += 1
        done.bytes_deleted += size


def maintain(store: TableStore, retention_hours: float, orphan_min_age_hours: float, now_ms: int) -> Maintenance:
    """One maintenance pass over every table of the store."""
    done = Maintenance()
    for tdef in tables.ALL:
        maintain_table(store.table(tdef.name), int(retention_hours * HOUR_MS), int(orphan_min_age_hours * HOUR_MS),
                       now_ms, done)
    for failure in done.failures[:5]:
        log.warning("maintenance could not delete %s; the next pass tries again", failure)
    return done
