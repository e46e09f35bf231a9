"""Raw files the convert stage cannot read: found before (or during) a batch, moved aside with
their reason, so one bad file never stops the other files and tenants from converting.

Invariant: every raw file is converted, waiting for the next run, or in the lake's quarantine
area (``quarantine/<its raw key>``, the same bytes) beside a reason record
(``quarantine/<its raw key>.reason.json``): nothing is dropped unseen, and no reader of
``raw/`` (convert, erasure, a query over ``raw/**``) trips on it again.

Moving (rather than keeping a list of keys to skip) is deliberate: the raw lake stays readable
as a whole by anything, and a spool segment redelivered under the same key after the fault is
fixed lands in ``raw/`` again and is converted like any new file. To put a repaired file back,
copy it to its raw key (the reason record says which) and delete the two quarantine objects.

The move goes through the storage seam (local folder or S3): copy, reason, then delete the raw
key only if it still holds the bytes that were checked, so a good file delivered over it in the
meantime is left in place. A crash in between leaves the raw file where it was: the next run
quarantines it again, overwriting the same quarantine keys.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import pyarrow as pa

from beaconlake.backends.storage import Storage
from beaconlake.convert.lake import RawFile, RawLake
from beaconlake.convert.pages import UNCHECKED, checksum_problem
from beaconlake.errors import StorageError
from beaconlake.lake import layout
from beaconlake.types import RAW_SCHEMA

log = logging.getLogger(__name__)

PREFIX = layout.QUARANTINE
# Columns the raw schema declares NOT NULL: without them an event has no identity, time or tenant.
REQUIRED = tuple(f.name for f in RAW_SCHEMA if not f.nullable)


@dataclass(frozen=True)
class Quarantined:
    key: str  # the raw key the file had
    reason: str
    size_bytes: int
    run_id: str
    quarantined_ms: int

    @property
    def tenant(self) -> str:
        return layout.parse_raw(self.key).tenant


def _compatible(have: pa.DataType, want: pa.DataType) -> bool:
    """Whether the engines' cast of a file column to the raw schema's type is lossless."""
    if have == want:
        return True
    if pa.types.is_dictionary(have):
        return _compatible(have.value_type, want)
    if pa.types.is_string(want):
        return pa.types.is_string(have) or pa.types.is_large_string(have) or pa.types.is_string_view(have)
    if pa.types.is_int64(want):
        return pa.types.is_signed_integer(have) or have in (pa.uint8(), pa.uint16(), pa.uint32())
    return False


def footer_problem(source: pa.NativeFile) -> str | None:
    """Why a raw file cannot be converted, judged from its footer alone (one small read): not
    Parquet, truncated, a raw-schema column of another type, a required column missing or NULL."""
    return _footer(source)[1]


def _footer(source: pa.NativeFile):
    """(the footer, None) or (None or the footer, ``footer_problem``'s verdict)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(source)
        schema = meta.schema.to_arrow_schema()
    except (OSError, ValueError, pa.ArrowException) as exc:
        return None, f"unreadable Parquet footer: {_first_line(exc)}"
    return meta, _schema_problem(meta, schema)


def _schema_problem(meta, schema: pa.Schema) -> str | None:
    for field in RAW_SCHEMA:
        i = schema.get_field_index(field.name)
        if i < 0:
            if field.name in REQUIRED:
                return f"column {field.name} is missing; the raw schema requires it ({field.type})"
            continue
        have = schema.field(i).type
        if not _compatible(have, field.type):
            return f"column {field.name} is {have}; the raw schema says {field.type}"
    nulls = _null_counts(meta, [c for c in REQUIRED if schema.get_field_index(c) >= 0])
    bad = [c for c, n in nulls.items() if n]
    if bad:
        return f"column {bad[0]} holds {nulls[bad[0]]} NULL(s); the raw schema declares it NOT NULL"
    return None


def _null_counts(meta, columns: list[str]) -> dict[str, int]:
    """NULLs per column from the row groups' statistics (columns without statistics count 0)."""
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    counts = dict.fromkeys(columns, 0)
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for c in columns:
            stats = group.column(names.index(c)).statistics if c in names else None
            if stats is not None and stats.has_null_count:
                counts[c] += stats.null_count
    return counts


def page_problem(source: pa.NativeFile) -> str | None:
    """Why a raw file cannot be converted, found by its footer, then by the checksum of every page
    of its raw-schema columns (lake delivery writes page checksums). Every new raw file gets this
    before the engines see it: damage to a page whose bytes still decode (zstd keeps high-entropy
    values such as event ids uncompressed) gives other values, not an error, and DuckDB does not
    check page checksums, so without it a damaged file would be converted into wrong rows.

    The checksums are compared without decoding the pages (pages.py): decoding them as well cost
    about a fifth of convert's CPU (docs/performance.md). A file with a page without a checksum
    (another writer's, or delivery's before it wrote them) is decoded whole instead, as before:
    a damaged page that no longer decodes is then still found here."""
    meta, found = _footer(source)
    if found:
        return found
    found = checksum_problem(source, meta, RAW_SCHEMA.names)
    if found == UNCHECKED:
        return _pages_problem(source, validate=False)
    return f"a data page does not decode or fails its checksum: {found}" if found else None


def read_problem(source: pa.NativeFile) -> str | None:
    """``page_problem``, and every value checked as the engines check it (strings are UTF-8...):
    used after an engine failed on a batch, to find which file did it."""
    return _pages_problem(source, validate=True)


def _pages_problem(source: pa.NativeFile, validate: bool) -> str | None:
    import pyarrow.parquet as pq

    footer = footer_problem(source)
    if footer:
        return footer
    try:
        pf = pq.ParquetFile(source, page_checksum_verification=True)
        names = [n for n in RAW_SCHEMA.names if n in pf.schema_arrow.names]
        for rg in range(pf.num_row_groups):
            table = pf.read_row_group(rg, columns=names)
            if validate:
                table.validate(full=True)
    except (OSError, ValueError, pa.ArrowException) as exc:
        return f"a data page does not decode or fails its checksum: {_first_line(exc)}"
    return None


Check = Callable[[pa.NativeFile], "str | None"]


def problem(lake: RawLake, f: RawFile, check: Check) -> str | None:
    """``check`` of the file as the lake serves it; a file that cannot be opened is a problem too
    (``Quarantine.put`` looks again at the bytes before it moves anything)."""
    try:
        with lake.open(f) as source:
            return check(source)
    except (OSError, pa.ArrowException) as exc:
        return f"cannot be opened: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


class Quarantine:
    """Moves raw files aside for one run; ``moved`` lists what this run quarantined."""

    def __init__(self, storage: Storage, run_id: str) -> None:
        self.storage = storage
        self.run_id = run_id
        self.moved: list[Quarantined] = []

    def put(self, f: RawFile, reason: str, check: Check | None) -> Quarantined | None:
        """Move ``f`` aside, if ``check`` still finds a problem in the bytes the storage returns
        (an I/O error of the moment is not a bad file: then nothing moves and None is returned).
        ``check`` None: the verdict was reached on these bytes already (an engine's, on a local copy)."""
        data = self.storage.get(f.key)  # a storage that cannot serve the file raises: the run fails, nothing moves
        if check is not None and check(pa.BufferReader(data)) is None:
            log.warning("%s looked unreadable (%s) but its bytes read fine: left in raw/", f.key, reason)
            return None
        record = Quarantined(f.key, reason, len(data), self.run_id, time.time_ns() // 1_000_000)
        self.storage.put(layout.quarantine_key(f.key), data)
        self.storage.put(layout.reason_key(f.key), json.dumps(
            {**asdict(record), "restore": f"fix the file, copy it to {f.key} and delete the two {PREFIX}{f.key}* objects"},
            indent=1).encode())
        try:
            still = self.storage.get(f.key)
        except StorageError:
            still = None  # gone already: nothing to delete
        if still == data:
            self.storage.delete(f.key)
        elif still is not None:
            log.warning("%s was replaced while being quarantined; the new file stays in raw/", f.key)
        self.moved.append(record)
        log.warning("quarantined raw file %s (%d bytes): %s; it is now %s%s", f.key, f.size, reason, PREFIX, f.key)
        return record


def keys(storage: Storage, tenant: str) -> set[str]:
    """Raw keys of ``tenant`` that are in quarantine (by this run or an earlier one)."""
    parsed = (layout.parse_quarantine(k) for k in storage.list(layout.quarantine_prefix(tenant)))
    return {q.raw_key for q in parsed if q is not None and not q.reason}


def listing(storage: Storage, tenant: str | None = None, limit: int = 50) -> list[dict]:
    """The reason records in quarantine (of ``tenant``; all when None), newest first, at most ``limit``."""
    records = []
    for key in storage.list(layout.quarantine_prefix(tenant) if tenant else PREFIX):
        q = layout.parse_quarantine(key)
        if q is None or not q.reason:
            continue
        try:
            records.append(json.loads(storage.get(key)))
        except (StorageError, ValueError):
            records.append({"key": q.raw_key, "reason": "(reason record unreadable)"})
    records.sort(key=lambda r: r.get("quarantined_ms") or 0, reverse=True)
    return records[:limit]
