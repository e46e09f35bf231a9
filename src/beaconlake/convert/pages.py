"""Parquet page checksums, verified without decoding the pages.

Why: lake delivery writes a CRC-32 in every page header (``write_page_checksum``), the one way to
tell a damaged page whose bytes still decode (zstd stores high-entropy values such as event ids
as they are) from a whole one. pyarrow verifies it only while it also decompresses and decodes
the page, which cost about a fifth of convert's CPU; the CRC itself runs at memory speed. So this
walks each column chunk's pages (the chunk's byte range from the footer; each page a Thrift
compact-protocol ``PageHeader`` and its ``compressed_page_size`` bytes) and compares the CRC-32
of each page's bytes with the header's. The Parquet format defines the checksum over the page's
bytes as stored, after compression: nothing needs decoding.

The checksum covers a page's data, not its header, so the headers are checked too: a data page's
value count and type change what a reader returns without an error (found by flipping every bit
of a delivered file, tests/convert/test_convert_pages.py), so the counts must add up to the
footer's and each type must match the header it carries.

Verdicts: ``None`` every page of the chunks checked has a checksum and it matches; a reason when a
header does not parse or disagrees, a page runs past its chunk, or a checksum differs; ``UNCHECKED`` when a
page has no checksum (a file written by another tool, or before delivery wrote them): the caller
then decodes the file instead, as before.
"""

from __future__ import annotations

import zlib

import pyarrow as pa

UNCHECKED = "unchecked"
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)
_MAX_DEPTH = 16  # PageHeader nests two levels (statistics inside a data page header); more is damage


class _Damaged(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Damaged("a page header ends inside a number")
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _skip(buf: bytes, pos: int, kind: int, depth: int) -> int:
    """The position after a value of compact-protocol type ``kind`` at ``pos``."""
    if kind in (_TRUE, _FALSE):
        return pos  # a struct field's bool is in its type (a list's bools are a byte each: _BYTE)
    if kind == _BYTE:
        return pos + 1
    if kind in (_I16, _I32, _I64):
        return _varint(buf, pos)[1]
    if kind == _DOUBLE:
        return pos + 8
    if kind == _BINARY:
        n, pos = _varint(buf, pos)
        return pos + n
    if depth >= _MAX_DEPTH:
        raise _Damaged("a page header nests too deep")
    if kind in (_LIST, _SET):
        if pos >= len(buf):
            raise _Damaged("a page header ends inside a list")
        head = buf[pos]
        n, pos = (head >> 4, pos + 1) if head >> 4 != 15 else _varint(buf, pos + 1)
        elem = _BYTE if head & 0x0F in (_TRUE, _FALSE) else head & 0x0F
        if n > len(buf) - pos:  # each element takes a byte at least: a damaged length must not loop for ever
            raise _Damaged(f"a page header's list of {n} is longer than its bytes")
        for _ in range(n):
            pos = _skip(buf, pos, elem, depth + 1)
        return pos
    if kind == _MAP:
        n, pos = _varint(buf, pos)
        if n > len(buf) - pos:
            raise _Damaged(f"a page header's map of {n} is longer than its bytes")
        if n:
            if pos >= len(buf):
                raise _Damaged("a page header ends inside a map")
            k, v = buf[pos] >> 4, buf[pos] & 0x0F
            pos += 1
            for _ in range(n):
                pos = _skip(buf, _skip(buf, pos, _BYTE if k in (_TRUE, _FALSE) else k, depth + 1),
                            _BYTE if v in (_TRUE, _FALSE) else v, depth + 1)
        return pos
    if kind == _STRUCT:
        return _struct(buf, pos, depth + 1)[0]
    raise _Damaged(f"a page header holds an unknown Thrift type {kind}")


def _struct(buf: bytes, pos: int, depth: int, wanted: tuple[int, ...] = (),
            nested: tuple[int, ...] = ()) -> tuple[int, dict[int, int]]:
    """The position after the struct at ``pos``, and the values of its ``wanted`` i32 fields and of
    the first field (an i32) of its ``nested`` struct fields, as ``-fid``.
    (Integers and strings are read inline: a page header is mostly those, and this runs for every
    page convert reads.)"""
    last, values, end = 0, {}, len(buf)
    while True:
        if pos >= end:
            raise _Damaged("a page header ends inside a struct")
        b = buf[pos]
        pos += 1
        if b == _STOP:
            return pos, values
        kind = b & 0x0F
        if b >> 4:
            fid = last + (b >> 4)
        else:
            n, pos = _varint(buf, pos)
            fid = _zigzag(n)
        last = fid
        if kind in (_I16, _I32, _I64, _BINARY):
            if pos >= end:
                raise _Damaged("a page header ends inside a number")
            n = buf[pos]
            if n & 0x80:
                n, pos = _varint(buf, pos)
            else:
                pos += 1
            if kind == _BINARY:
                pos += n
            elif fid in wanted and kind == _I32:
                values[fid] = _zigzag(n)
        elif kind == _STRUCT and fid in nested:
            pos, inner = _struct(buf, pos, depth + 1, (1,))
            values[-fid] = inner.get(1, -1)
        else:
            pos = _skip(buf, pos, kind, depth)


# PageHeader fields (parquet.thrift): 1 type, 3 compressed_page_size, 4 crc, and the header of its
# type: 5 data_page_header, 7 dictionary_page_header, 8 data_page_header_v2 (field 1: num_values)
_TYPE, _SIZE, _CRC, _DATA, _DICT, _DATA_V2 = 1, 3, 4, 5, 7, 8
_HEADER_OF_TYPE = {0: _DATA, 2: _DICT, 3: _DATA_V2}  # PageType: DATA_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2


def chunk_problem(data: bytes, num_values: int) -> str | None:
    """The verdict on one column chunk's bytes (its pages, headers included), which the footer
    says hold ``num_values`` values. The checksum covers a page's data, not its header: the data
    pages' value counts must add up to the footer's, since a damaged count in a header can make
    a reader return fewer values without an error; and a page's type must agree with the header
    it carries (a data page read as a dictionary replaces the values without an error)."""
    pos, values = 0, 0
    while pos < len(data):
        start = pos
        try:
            pos, fields = _struct(data, pos, 0, (_TYPE, _SIZE, _CRC), (_DATA, _DICT, _DATA_V2))
        except _Damaged as exc:
            return f"{exc} at byte {pos} of the column chunk"
        header = _HEADER_OF_TYPE.get(fields.get(_TYPE, -1))
        kinds = [k for k in (_DATA, _DICT, _DATA_V2) if -k in fields]
        if kinds != [header] or (header == _DICT and start):
            return f"the page at byte {start} of the column chunk has type {fields.get(_TYPE)} and headers {kinds}"
        values += fields.get(-_DATA, 0) + fields.get(-_DATA_V2, 0)
        size = fields.get(_SIZE)
        if size is None or size < 0 or pos + size > len(data):
            return f"a page at byte {pos} of the column chunk runs past its end ({size} bytes)"
        if _CRC not in fields:
            return UNCHECKED
        if zlib.crc32(data[pos:pos + size]) != fields[_CRC] & 0xFFFFFFFF:
            return f"a page at byte {pos} of the column chunk fails its checksum"
        pos += size
    if values != num_values:
        return f"its data pages hold {values} values, its footer says {num_values}"
    return None


def checksum_problem(source: pa.NativeFile, meta, columns: list[str]) -> str | None:
    """The verdict on every page of ``columns`` (of the file's footer ``meta``): the first problem,
    else ``UNCHECKED`` when a page has no checksum, else None."""
    unchecked = False
    paths = [meta.schema.column(i).path for i in range(meta.num_columns)]
    wanted = [i for i, p in enumerate(paths) if p in columns]
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        spans = []
        for i in wanted:
            col = group.column(i)
            start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
            if start is None or start < 4 or (col.has_dictionary_page and start > col.data_page_offset):
                return UNCHECKED  # offsets some old writers got wrong (readers work around them): decode instead
            spans.append((i, start, start + col.total_compressed_size, col.num_values))
        if not spans:
            continue
        # one read per row group (its chunks are next to each other): one request on S3, not one a column
        lo = min(span[1] for span in spans)
        data = memoryview(source.read_at(max(span[2] for span in spans) - lo, lo))
        for i, start, stop, num_values in spans:
            found = chunk_problem(data[start - lo:stop - lo], num_values)
            if found == UNCHECKED:
                unchecked = True
            elif found:
                return f"column {paths[i]}, row group {rg}: {found}"
    return UNCHECKED if unchecked else None
