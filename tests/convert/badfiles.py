"""Raw lake files that are broken in the ways a lake's files break: cut short, overwritten with
other bytes, written by another tool with another schema, or whole in the footer with a page
that does not decode."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from rawlake import event, write_raw

from beaconlake.types import RAW_SCHEMA


def good_events(anon: str, start: int, n: int = 300, tenant: str = "shop") -> list[dict]:
    """``n`` events a few seconds apart with varied, incompressible JSON: big column chunks."""
    return [event(anon, start + i * 3000, "click", "low", tenant=tenant, event_id=f"{tenant}-{anon}-{i}",
                  props={"x": i, "noise": f"{(i * 2654435761) % 4294967296:x}" * 8}) for i in range(n)]


def truncated(lake: Path, events: list[dict], segment: str) -> Path:
    [path] = write_raw(lake, events, segment)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def garbage(lake: Path, events: list[dict], segment: str) -> Path:
    [path] = write_raw(lake, events, segment)
    path.write_bytes(b"PAR1 this is not what a lake deliverer writes " * 50)
    return path


def wrong_type(lake: Path, events: list[dict], segment: str) -> Path:
    """event_ts written as text: a tool that did not use the raw schema."""
    [path] = write_raw(lake, events, segment)
    table = pq.read_table(path)
    i = table.schema.get_field_index("event_ts")
    table = table.set_column(i, pa.field("event_ts", pa.string()), table["event_ts"].cast(pa.string()))
    pq.write_table(table, path, compression="zstd")
    return path


def missing_column(lake: Path, events: list[dict], segment: str) -> Path:
    [path] = write_raw(lake, events, segment)
    pq.write_table(pq.read_table(path).drop_columns(["anonymous_id"]), path, compression="zstd")
    return path


def corrupt_page(lake: Path, events: list[dict], segment: str) -> Path:
    """The footer is whole (so a footer check passes) but the middle of the ``props`` column's
    compressed pages is overwritten: only reading the rows finds it."""
    [path] = write_raw(lake, events, segment)
    data = bytearray(path.read_bytes())
    meta = pq.read_metadata(path)
    column = meta.row_group(0).column(RAW_SCHEMA.get_field_index("props"))
    start = column.dictionary_page_offset or column.data_page_offset
    middle = start + column.total_compressed_size // 2
    for i in range(64):
        data[middle + i] ^= 0x5A
    path.write_bytes(bytes(data))
    assert pq.read_metadata(path).num_rows == len(events)  # the footer still reads
    return path


def invalid_utf8(lake: Path, events: list[dict], segment: str) -> Path:
    """Written uncompressed by another tool, with invalid UTF-8 in its strings: every page decodes
    and checks out, so only the engine, reading the rows, stops on it."""
    [path] = write_raw(lake, events, segment)
    pq.write_table(pq.read_table(path), path, compression="none")
    anon = events[0]["anonymous_id"].encode()
    path.write_bytes(path.read_bytes().replace(anon, b"\xff" + anon[1:]))
    return path


BROKEN = {"truncated": truncated, "garbage": garbage, "wrong_type": wrong_type, "missing_column": missing_column,
          "corrupt_page": corrupt_page}
REASONS = {"truncated": "unreadable Parquet footer", "garbage": "unreadable Parquet footer",
           "wrong_type": "column event_ts is string; the raw schema says int64",
           "missing_column": "column anonymous_id is missing", "corrupt_page": "a data page does not decode",
           "invalid_utf8": "Invalid UTF8"}
