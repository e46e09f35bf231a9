"""How every raw and rejected lake file is written: by delivery, imports, the lake sequence
detector's own matches, and erasure's rewrites alike.

- zstd, at ``delivery.zstd_level``;
- a CRC-32 in every page header: convert verifies them (``convert/pages.py``), the one way to
  tell a damaged page whose bytes still decode;
- dictionary encoding only for the columns whose values repeat across a segment's requests
  (``DICTIONARY_COLUMNS``: the request's own, the event's level and name, and the ids convert
  groups by). pyarrow's default tries a dictionary for every column, and for event ids, clocks
  and JSON text it is paid for and then outgrown. With zstd level 1 (the default since), on
  bench/deliver's segments: 1.37 to 1.10 us of CPU an event, files 8 % smaller
  (docs/performance.md, "Delivery").
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

DICTIONARY_COLUMNS = frozenset({
    "tenant", "level", "name", "source", "segment", "ip", "user_agent",
    "ua_browser", "ua_browser_version", "ua_os", "ua_os_version", "ua_device",
    "anonymous_id", "session_id", "user_id",
    "reason",  # rejected rows
})


def file_bytes(table: pa.Table, zstd_level: int) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", compression_level=zstd_level, write_page_checksum=True,
                   use_dictionary=[c for c in table.column_names if c in DICTIONARY_COLUMNS])
    return buf.getvalue()
