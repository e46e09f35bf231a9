"""The events table's files within a day are clustered by a hash bucket of ``anonymous_id``.

Why: a new raw file changes the rows of the people in it only, so an incremental run rewrites
the files of those people's buckets (and appends their new events) instead of whole days.

The layout, in the file paths only (Iceberg sees plain ``tenant`` / ``day(event_ts)`` partitions,
so readers need not know it):

* ``.../tenant=T/event_date=D/bucket=<id>/<file>.parquet`` holds exactly the rows of one bucket.
  ``<id>`` is ``n + b``: bucket ``b`` of ``n`` (a power of two), so the id alone says both
  (``n`` is the highest power of two not above it). A day has one ``n`` for all its bucket files.
* ``.../bucket=delta/<file>.parquet`` holds new events appended to a day by incremental runs,
  of any bucket; the next rewrite of a bucket takes its rows out of them, and a day with too
  many is compacted into its buckets.
* A file without ``bucket=`` (written before this layout, or by another tool) holds rows of any
  bucket: a day with one is rewritten whole, which moves it to this layout.

The bucket of an anonymous id is the first 32 bits of its MD5, modulo ``n``: the same in
Python, DuckDB and Spark (``Dialect.bucket_id``), so files written by either engine mix.
"""

from __future__ import annotations

import hashlib
import re

MAX_BUCKETS = 1024
DELTA = "delta"
_BUCKET_DIR = re.compile(r"/bucket=(\d+|delta)/")


def bucket_count(raw_bytes: int, target_bytes: int) -> int:
    """Buckets for a day of ``raw_bytes`` raw Parquet: a power of two near ``raw / target``."""
    n = 1
    while n < MAX_BUCKETS and n * target_bytes < raw_bytes:
        n *= 2
    return n


def bucket_id(anonymous_id: str, n: int) -> int:
    return n + int(hashlib.md5(anonymous_id.encode()).hexdigest()[:8], 16) % n


def split_id(bucket: int) -> tuple[int, int]:
    """(n, b) of a bucket id."""
    n = 1 << (bucket.bit_length() - 1)
    return n, bucket - n


def of_path(path: str) -> int | str | None:
    """The bucket id a data file holds, ``DELTA`` for an appended file, None when unbucketed."""
    m = _BUCKET_DIR.search(path)
    if m is None:
        return None
    return DELTA if m.group(1) == DELTA else int(m.group(1))
