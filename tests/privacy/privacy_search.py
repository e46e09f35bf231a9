"""Looking for a person's bytes in every file a deployment keeps: the check of an erasure.

A plain byte search finds nothing in compressed files, which would make "zero hits" prove
nothing; so each file is searched as it is stored AND as its readers see it: a Parquet file's
rows (every column, as text), an Avro file's decompressed blocks (Iceberg manifests hold column
bounds), a gzip file's contents. Every other file (SQLite databases and their WAL, spool
segments, JSON, the detector's checkpoint) stores strings uncompressed and is searched as is.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import pyarrow.parquet as pq


def _long(buf: io.BytesIO) -> int:
    shift, value = 0, 0
    while True:
        b = buf.read(1)[0]
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return (value >> 1) ^ -(value & 1)


def _bytes(buf: io.BytesIO) -> bytes:
    return buf.read(_long(buf))


def avro_blocks(data: bytes) -> bytes:
    """The decompressed data blocks of an Avro object container file (null or deflate codec)."""
    buf = io.BytesIO(data)
    assert buf.read(4) == b"Obj\x01"
    meta = {}
    while (count := _long(buf)) != 0:
        if count < 0:
            _long(buf)
            count = -count
        for _ in range(count):
            key = _bytes(buf).decode()
            meta[key] = _bytes(buf)
    buf.read(16)
    codec = meta.get("avro.codec", b"null").decode()
    out = []
    while buf.tell() < len(data):
        _long(buf)
        block = _bytes(buf)
        buf.read(16)
        out.append(zlib.decompress(block, -15) if codec == "deflate" else block)
    return b"".join(out)


def readable(name: str, data: bytes) -> list[bytes]:
    """The file's bytes, and what its readers see when that differs."""
    views = [data]
    if name.endswith(".parquet"):
        table = pq.read_table(io.BytesIO(data))
        views.append(str(table.to_pylist()).encode("utf-8", "surrogatepass"))
    elif name.endswith(".avro"):
        views.append(avro_blocks(data))
    elif name.endswith(".gz"):
        views.append(gzip.decompress(data))
    return views


def hits(files: dict[str, bytes], needles: list[str]) -> list[tuple[str, str]]:
    """(file, needle) for every needle found in a file."""
    found = []
    for name, data in sorted(files.items()):
        views = readable(name, data)
        for needle in needles:
            raw = needle.encode()
            if any(raw in v for v in views):
                found.append((name, needle))
    return found


def local_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def bucket_files(client, bucket: str) -> dict[str, bytes]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[f"s3://{bucket}/{obj['Key']}"] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out
