"""The one writer of raw and rejected lake files: what it writes reads back as it was, with the
page checksums convert verifies, and dictionaries only where values repeat."""

import io

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from beaconlake.convert.pages import checksum_problem
from beaconlake.lake.parquet import DICTIONARY_COLUMNS, file_bytes
from beaconlake.types import RAW_SCHEMA, REJECTED_SCHEMA

_text = st.none() | st.text(max_size=12)


def _rows(schema: pa.Schema, draw, n: int) -> pa.Table:
    cols = {}
    for f in schema:
        if pa.types.is_string(f.type):
            values = st.text(max_size=12) if not f.nullable else _text
        elif pa.types.is_boolean(f.type):
            values = st.booleans()
        elif pa.types.is_int32(f.type):
            values = st.integers(-(2**31), 2**31 - 1)
        else:
            values = st.integers(-(2**63), 2**63 - 1)
        cols[f.name] = draw(st.lists(values, min_size=n, max_size=n))
    return pa.table(cols, schema=schema)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(1, 30), level=st.integers(1, 5), rejected=st.booleans())
def test_a_lake_file_reads_back_as_written(data, n, level, rejected):
    schema = REJECTED_SCHEMA if rejected else RAW_SCHEMA
    table = _rows(schema, data.draw, n)
    back = pq.read_table(io.BytesIO(file_bytes(table, level)))
    assert back.schema.remove_metadata() == schema
    assert back.to_pylist() == table.to_pylist()


def test_dictionaries_only_for_repeating_columns_and_a_checksum_on_every_page():
    rows = [{f.name: None for f in RAW_SCHEMA} | {
        "tenant": "shop", "level": "mid", "name": "page_view", "anonymous_id": f"a{i % 7}", "event_id": f"e{i}",
        "client_ts": i, "sent_at": i, "received_at": i, "event_ts": i, "is_bot": False, "segment": "s",
        "props": f'{{"n":{i}}}'} for i in range(500)]
    data = file_bytes(pa.Table.from_pylist(rows, schema=RAW_SCHEMA), 1)
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    group = meta.row_group(0)
    for i in range(group.num_columns):
        col = group.column(i)
        assert col.has_dictionary_page == (col.path_in_schema in DICTIONARY_COLUMNS), col.path_in_schema
    # convert walks the pages and compares their CRCs (convert/pages.py): every page carries one
    assert checksum_problem(pa.BufferReader(data), meta, RAW_SCHEMA.names) is None
