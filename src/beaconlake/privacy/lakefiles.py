"""The raw and rejected areas of the lake, without the forgotten people.

One scan serves every pending erasure of a tenant: each raw file's ``anonymous_id`` and
``user_id`` columns are read once, in one Arrow scan (two narrow columns, never the whole file), which gives both the
identity links (``graph.py``) and, per file, the ids it holds. Only the files that hold one of
the forgotten ids are then read whole and rewritten without their rows, under the same key
(``Storage.put`` is atomic: a reader sees the old file or the new one), or deleted when nothing is
left. So forgetting a few people rewrites a few files, not the lake.

A rejected row has no id columns (it keeps what the door refused: an excerpt of the body and the
error); a row whose excerpt or error holds one of the ids goes.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from beaconlake.backends.storage import Storage
from beaconlake.lake import layout
from beaconlake.lake.parquet import file_bytes

# Files rewritten at once: their reads and writes (pyarrow, outside the GIL) overlap.
REWRITE_THREADS = 4


@dataclass
class FileIds:
    key: str
    ids: pa.Array  # the distinct anonymous and user ids the file holds


def scan_raw(storage: Storage, tenant: str) -> tuple[list[FileIds], list[tuple[str, str]]]:
    """Per raw file of ``tenant``, the ids it holds; and every (anonymous id, user id) link.
    One Arrow scan over every file (its reads run ahead, in parallel, in C++), two columns only."""
    keys = [k for k in storage.list(layout.raw_prefix(tenant)) if layout.parse_raw(k)]
    if not keys:
        return [], []
    fs, root = storage.arrow_filesystem()
    by_path = {f"{root}/{k}": k for k in keys}
    dataset = ds.dataset(list(by_path), filesystem=fs, format="parquet")
    batches: dict[str, list[pa.RecordBatch]] = {}
    for tagged in ds.Scanner.from_dataset(dataset, columns=["anonymous_id", "user_id"]).scan_batches():
        batches.setdefault(tagged.fragment.path, []).append(tagged.record_batch)
    files, links = [], []
    for path, parts in batches.items():
        t = pa.Table.from_batches(parts)
        ids = pc.unique(pa.concat_arrays([t["anonymous_id"].combine_chunks(),
                                          t["user_id"].combine_chunks().drop_null()]))
        files.append(FileIds(by_path[path], ids))
        linked = t.filter(pc.is_valid(t["user_id"])).group_by(["anonymous_id", "user_id"]).aggregate([])
        links += zip(linked["anonymous_id"].to_pylist(), linked["user_id"].to_pylist())
    return files, links


def holding(files: list[FileIds], ids: set[str]) -> list[str]:
    """The keys of the files that hold any of ``ids``."""
    wanted = pa.array(sorted(ids), pa.string())
    return [f.key for f in files if pc.any(pc.is_in(f.ids, value_set=wanted)).as_py()]


def _rewrite(storage: Storage, key: str, keep, zstd_level: int) -> tuple[int, int | None]:
    """Rewrite ``key`` with the rows ``keep(table)`` selects: (rows removed, new size, or None
    when the file was deleted because nothing was left)."""
    with storage.open_input(key) as f:
        table = pq.read_table(f)
    kept = table.filter(keep(table))
    removed = table.num_rows - kept.num_rows
    if not removed:
        return 0, -1
    if kept.num_rows == 0:
        storage.delete(key)
        return removed, None
    data = file_bytes(kept, zstd_level)
    storage.put(key, data)
    return removed, len(data)


def forget_raw(storage: Storage, keys: list[str], ids: set[str], zstd_level: int) -> tuple[int, dict[str, int | None]]:
    """Rewrite the raw files ``keys`` without the rows of ``ids``: (rows removed, {key: new size
    or None when deleted}) for the files that changed."""
    wanted = pa.array(sorted(ids), pa.string())

    def keep(t: pa.Table) -> pa.Array:
        mine = pc.or_(pc.is_in(t["anonymous_id"], value_set=wanted),
                      pc.fill_null(pc.is_in(t["user_id"], value_set=wanted), False))
        return pc.invert(mine)

    removed, sizes = 0, {}
    with ThreadPoolExecutor(REWRITE_THREADS) as pool:  # pyarrow reads and writes outside the GIL
        for key, (gone, size) in zip(keys, pool.map(lambda k: _rewrite(storage, k, keep, zstd_level), keys)):
            if gone:
                removed += gone
                sizes[key] = size
    return removed, sizes


def forget_rejected(storage: Storage, tenant: str, ids: set[str], zstd_level: int) -> int:
    """Rewrite the rejected files of ``tenant`` without the rows that name one of ``ids``."""
    pattern = "|".join(re.escape(i) for i in sorted(ids))

    def keep(t: pa.Table) -> pa.Array:
        named = pc.or_(pc.match_substring_regex(t["excerpt"], pattern),
                       pc.match_substring_regex(t["error"], pattern))
        return pc.invert(pc.fill_null(named, False))

    removed = 0
    for key in storage.list(layout.rejected_prefix(tenant)):
        if layout.parse_rejected(key):
            removed += _rewrite(storage, key, keep, zstd_level)[0]
    return removed
