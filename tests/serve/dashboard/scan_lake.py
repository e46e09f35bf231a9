"""Converted tables of two simulated tenants over many days, for the planned-read tests: built
once on the embedded defaults (SQLite catalog, local warehouse), and copied to a remote setup
(SQL catalog on PostgreSQL, warehouse in moto's S3) through pyiceberg's own writer, so the same
rows sit in files that only the remote reader can open."""

from __future__ import annotations

import uuid
from pathlib import Path

import msgspec
import pyarrow.compute as pc
import pyarrow.parquet as pq

from beaconlake import config
from beaconlake.convert import tables
from beaconlake.convert.catalog import TABLE_PROPERTIES, TableStore
from beaconlake.convert.run import convert, open_store
from beaconlake.convert.tables import iceberg_schema, partition_spec
from beaconlake.simulate import visits, write_raw_lake

DAY_MS = 86_400_000
START_MS = 1_761_955_200_000  # 2025-11-01T00:00:00Z
DAYS = 12
SEQUENCES = [
    {"name": "considered_then_added", "within_secs": 600, "steps": [
        {"name": "product_view", "where": [{"field": "props.category", "op": "exists"}]},
        {"name": "product_view", "same": ["props.category"]},
        {"name": "add_to_cart"},
    ]},
    {"name": "browsed_to_purchase", "within_secs": 3600, "steps": [
        {"name": "page_view"}, {"name": "add_to_cart"}, {"name": "purchase"},
    ]},
]
TENANTS = {"shop": 30, "other": 12}  # tenant -> simulated people


def _with_high_level(visit):
    """The visit, with the high-level event a browser detector would post after each add to cart
    (realtime detection is not part of a lake written without the collector)."""
    extra = []
    for ev in visit.events:
        extra.append(ev)
        if ev["name"] == "add_to_cart":
            extra.append({**ev, "event_id": str(uuid.UUID(int=uuid.UUID(ev["event_id"]).int ^ 1)), "level": "high",
                          "name": "considered_then_added", "client_ts": ev["client_ts"] + 1,
                          "props": {"definition": "considered_then_added", "source": "browser",
                                    "matched_event_ids": [ev["event_id"]]}})
    visit.events = extra
    return visit


def build(root: Path) -> config.Settings:
    tenants = [{"id": t, "write_key": f"wk_{t:_<20}", "read_key": f"rk_{t:_<20}", "sequences": SEQUENCES}
               for t in TENANTS]
    settings = config.parse({"data_dir": str(root / "data"), "tenants": tenants, "spool": {"min_free_disk_bytes": 0},
                             "engine": {"type": "duckdb", "threads": 2, "memory_limit_mb": 1024}}, root, environ={})
    for i, (tenant, people) in enumerate(TENANTS.items()):
        one = msgspec.structs.replace(settings, tenants=[settings.tenants[i]])
        write_raw_lake(one, (_with_high_level(v) for v in visits(people, DAYS, 11 + i, START_MS)))
    convert(settings, progress=False)
    return settings


def copy_tables(settings: config.Settings, catalog) -> TableStore:
    """The tables of ``settings``, copied into ``catalog``: one Parquet file per partition, written
    through the catalog's FileIO and added as convert adds its files."""
    source = open_store(settings)
    catalog.create_namespace_if_not_exists("beaconlake")
    for tdef in tables.ALL:
        schema = iceberg_schema(tdef.arrow)
        target = catalog.create_table(f"beaconlake.{tdef.name}", schema=schema, partition_spec=partition_spec(tdef, schema),
                                      properties=TABLE_PROPERTIES)
        data = source.table(tdef.name).scan().to_arrow().cast(target.schema().as_arrow())
        if not data.num_rows:
            continue
        keys = ["tenant"] + ([tdef.date_column] if tdef.date_column else [])
        groups = data.group_by(keys).aggregate([]).to_pylist() if tdef.name != "converted_files" else [{}]
        paths = []
        for group in groups:
            mask = None
            for key, value in group.items():
                m = pc.equal(data[key], value)
                mask = m if mask is None else pc.and_(mask, m)
            part = data.filter(mask) if mask is not None else data
            path = f"{target.location()}/data/{uuid.uuid4()}.parquet"
            with target.io.new_output(path).create() as out:
                pq.write_table(part, out)
            paths.append(path)
        target.add_files(paths)
    return TableStore(catalog, "beaconlake")
