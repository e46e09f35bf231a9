"""The Iceberg tables without the forgotten people, and no snapshot left that still has them.

Per table, the data files of the tenant whose id columns hold a forgotten id are found by
reading those columns only; each is rewritten without the person's rows (copy on write: the
tables keep having data files only, which convert's incremental runs rely on), and all of a
table's swaps are one overwrite commit (``TableStore.replace_files``), so readers see the table
before or after, never half. Then every snapshot but the current one is expired and the files
only they referenced are deleted at once, with the orphans (the lock that convert takes is held,
so no commit is in flight and no orphan is young for a good reason): time travel cannot bring the
rows back, because the files that held them are gone.

The ``converted_files`` table is told the new sizes of the rewritten raw files, so the next
convert run does not take them for new files (it would convert their days again: correct,
but wasted work).
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyiceberg.expressions import In
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.manifest import DataFile, ManifestContent

from beaconlake.convert import tables
from beaconlake.convert.catalog import TableStore
from beaconlake.convert.maintain import Maintenance, maintain_table
from beaconlake.convert.tables import TableDef

ID_COLUMNS = ("anonymous_id", "user_id", "stitched_user")
FORGETTABLE = (*tables.BAKED, tables.IDENTITIES)
REWRITE_THREADS = 4  # data files rewritten at once: pyarrow reads and writes outside the GIL


@dataclass(frozen=True)
class Found:
    file: DataFile
    relative: str  # its path under the table's data folder (partition folders and name)


def _data_files(store: TableStore, tdef: TableDef, tenant: str) -> list[Found]:
    table = store.table(tdef.name)
    snapshot = table.current_snapshot()
    base = table.location().rstrip("/") + "/data/"
    out = []
    for manifest in snapshot.manifests(table.io) if snapshot else []:
        if manifest.content != ManifestContent.DATA:
            continue  # delete files hold positions or keys of rows, never their values
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            f = entry.data_file
            if f.partition[0] != tenant:
                continue
            rel = f.file_path[len(base):] if f.file_path.startswith(base) else f"tenant={tenant}/{f.file_path.rsplit('/', 1)[-1]}"
            out.append(Found(f, rel))
    return out


def _mine(t: pa.Table, wanted: pa.Array) -> pa.Array:
    cols = [c for c in ID_COLUMNS if c in t.column_names]
    mask = pc.fill_null(pc.is_in(t[cols[0]], value_set=wanted), False)
    for c in cols[1:]:
        mask = pc.or_(mask, pc.fill_null(pc.is_in(t[c], value_set=wanted), False))
    return mask


def _holding(table, locations: list[str], cols: list[str], wanted: pa.Array) -> set[str]:
    """The data files (of ``locations``) whose id columns hold one of ``wanted``: one Arrow scan of
    those columns over them all, read ahead in parallel, through the table's own file system."""
    if not locations:
        return set()
    scheme, netloc, _path = PyArrowFileIO.parse_location(locations[0])
    fs = table.io.fs_by_scheme(scheme, netloc) if isinstance(table.io, PyArrowFileIO) else None
    if fs is None:  # another FileIO: file by file
        found = set()
        for location in locations:
            with table.io.new_input(location).open() as f:
                if pc.any(_mine(pq.read_table(f, columns=cols), wanted)).as_py():
                    found.add(location)
        return found
    by_path = {PyArrowFileIO.parse_location(loc)[2]: loc for loc in locations}
    schema = pa.schema([(c, pa.string()) for c in cols])
    dataset = ds.dataset(list(by_path), schema=schema, filesystem=fs, format="parquet")
    found = set()
    for tagged in ds.Scanner.from_dataset(dataset, columns=cols).scan_batches():
        path = tagged.fragment.path
        if path not in found and pc.any(_mine(pa.Table.from_batches([tagged.record_batch]), wanted)).as_py():
            found.add(path)
    return {by_path[p] for p in found}


def forget_table(store: TableStore, tdef: TableDef, tenant: str, ids: set[str], staging: Path, run_id: str) -> int:
    """Rewrite the data files of ``tdef`` holding ``ids`` (of ``tenant``); returns rows removed."""
    table = store.table(tdef.name)
    wanted = pa.array(sorted(ids), pa.string())
    cols = [c for c in ID_COLUMNS if c in {f.name for f in table.schema().fields}]
    deleted: list[DataFile] = []
    written: list[str] = []
    removed = 0
    files = _data_files(store, tdef, tenant)
    holding = _holding(table, [f.file.file_path for f in files], cols, wanted)

    def rewrite(found: Found) -> tuple[int, str | None]:
        with table.io.new_input(found.file.file_path).open() as f:
            whole = pq.read_table(f)
        kept = whole.filter(pc.invert(_mine(whole, wanted)))
        if not kept.num_rows:
            return whole.num_rows, None
        dest = staging / tdef.name / Path(found.relative).parent / f"{uuid.uuid4().hex}.parquet"
        dest.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(kept, dest, compression="zstd")
        return whole.num_rows - kept.num_rows, str(dest)

    hit = [f for f in files if f.file.file_path in holding]
    with ThreadPoolExecutor(REWRITE_THREADS) as pool:  # pyarrow reads and writes outside the GIL
        for found, (gone, dest) in zip(hit, pool.map(rewrite, hit)):
            removed += gone
            deleted.append(found.file)
            if dest is not None:
                written.append(dest)
    store.replace_files(tdef, deleted, written, run_id)
    return removed


def record_new_sizes(store: TableStore, sizes: dict[str, int | None], run_id: str) -> None:
    """Tell ``converted_files`` the new size of each rewritten raw file (None: deleted), for the
    files a run had converted."""
    if not sizes:
        return
    table = store.table(tables.CONVERTED_FILES.name)
    keys = sorted(sizes)
    rows = table.scan(row_filter=In("raw_key", keys)).to_arrow()
    if rows.num_rows == 0:
        return
    kept = [i for i, k in enumerate(rows["raw_key"].to_pylist()) if sizes[k] is not None]
    updated = rows.take(pa.array(kept, pa.int64()))
    updated = updated.set_column(updated.schema.get_field_index("size_bytes"), "size_bytes",
                                 pa.array([sizes[k] for k in updated["raw_key"].to_pylist()], pa.int64()))
    with table.transaction() as tx:
        tx.delete(In("raw_key", keys), snapshot_properties={"beaconlake.privacy.run-id": run_id})
        if updated.num_rows:
            tx.append(updated.cast(table.schema().as_arrow()), snapshot_properties={"beaconlake.privacy.run-id": run_id})


def expire_all(store: TableStore) -> Maintenance:
    """Expire every snapshot but each table's current one, and delete the files only they (or no
    snapshot) referenced. Call with the run lease held (convert/fence.py)."""
    done = Maintenance()
    now_ms = time.time_ns() // 1_000_000 + 1  # snapshots committed in this very millisecond too
    for tdef in tables.ALL:
        maintain_table(store.table(tdef.name), retention_ms=0, orphan_min_age_ms=0, now_ms=now_ms, done=done)
    return done
