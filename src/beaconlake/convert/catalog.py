"""The convert stage's Iceberg tables: creating and evolving them, reading what they hold, and
committing a batch.

A batch is committed per table as one Iceberg transaction: delete the rewritten days'
partitions (whole files: every data file holds one tenant and one day) and add the files the
engine wrote. Readers see the old days or the new ones, never a mix within a table.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import warnings
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    LessThan,
)
from pyiceberg.table import Table

from beaconlake.convert import tables
from beaconlake.convert.promote import Promoted
from beaconlake.convert.tables import TableDef, iceberg_schema, partition_spec

log = logging.getLogger(__name__)
RUN_PROPERTY = "beaconlake.convert.run-id"
# Table properties that keep metadata from piling up: appends merge small manifests (a run adds
# one per table), and a commit deletes metadata files beyond the newest 20.
TABLE_PROPERTIES = {
    "write.parquet.compression-codec": "zstd",
    "commit.manifest-merge.enabled": "true",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
}


def local_path(uri: str) -> str | None:
    """A local filesystem path for a file:// URI or a bare path; None for remote URIs."""
    if "://" not in uri:
        return uri
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else None


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


class TableStore:
    def __init__(self, catalog: Catalog, namespace: str) -> None:
        self.catalog = catalog
        self.namespace = namespace

    def ident(self, name: str) -> str:
        return f"{self.namespace}.{name}"

    def table(self, name: str) -> Table:
        return self.catalog.load_table(self.ident(name))

    # -- creating and evolving -----------------------------------------------------------------

    def ensure(self, promoted: list[Promoted]) -> None:
        """Create missing tables; add promoted columns the events table does not have yet."""
        self.catalog.create_namespace_if_not_exists(self.namespace)
        for tdef in tables.ALL:
            try:
                table = self.table(tdef.name)
            except NoSuchTableError:
                schema = iceberg_schema(tdef.arrow)
                self.catalog.create_table(
                    self.ident(tdef.name), schema=schema, partition_spec=partition_spec(tdef, schema),
                    properties=TABLE_PROPERTIES,
                )
                log.info("created Iceberg table %s", self.ident(tdef.name))
                continue
            if any(table.properties.get(k) != v for k, v in TABLE_PROPERTIES.items()):  # made by an older version
                with table.transaction() as tx:
                    tx.set_properties(TABLE_PROPERTIES)
        events = self.table(tables.EVENTS.name)
        have = {f.name for f in events.schema().fields}
        missing = [p for p in promoted if p.column not in have]
        if missing:
            with events.update_schema() as update:
                for p in missing:
                    update.add_column(p.column, iceberg_schema(pa.schema([pa.field(p.column, p.type)])).fields[0].field_type)
            log.info("events: added promoted column(s) %s", ", ".join(p.column for p in missing))

    def arrow_schema(self, name: str) -> pa.Schema:
        return self.table(name).schema().as_arrow()

    # -- reading -------------------------------------------------------------------------------

    def data_files(self, name: str, row_filter: BooleanExpression | None = None) -> list[str] | None:
        """Local paths of the data files a scan would read, or None when the table cannot be read
        file by file (remote files, or delete files from another writer): use ``to_arrow``."""
        table = self.table(name)
        paths = []
        for task in table.scan(row_filter=row_filter or AlwaysTrue()).plan_files():
            path = local_path(task.file.file_path)
            if path is None or task.delete_files:
                return None
            paths.append(path)
        return paths

    def converted(self) -> set[tuple[str, int]]:
        """(raw key, size) of every raw file a committed run converted."""
        t = self.table(tables.CONVERTED_FILES.name).scan(selected_fields=("raw_key", "size_bytes")).to_arrow()
        return set(zip(t.column("raw_key").to_pylist(), t.column("size_bytes").to_pylist(), strict=True))

    # -- committing ----------------------------------------------------------------------------

    def replace_days(self, tdef: TableDef, tenant: str, r0: int, r1: int, files: list[str], run_id: str) -> None:
        """Swap the partitions of days [r0, r1) of ``tenant`` for ``files``, in one commit."""
        table = self.table(tdef.name)
        placed = self._place(table, files)
        days = And(EqualTo("tenant", tenant), And(
            GreaterThanOrEqual(tdef.day_column, iso_ms(r0)), LessThan(tdef.day_column, iso_ms(r1))
        ))
        props = {RUN_PROPERTY: run_id}
        with table.transaction() as tx, warnings.catch_warnings():
            # a first conversion deletes nothing, and pyiceberg warns about that
            warnings.filterwarnings("ignore", "Delete operation did not match any records")
            tx.delete(days, snapshot_properties=props)
            if placed:
                # file names are fresh UUIDs, so the duplicate check (a scan of every manifest) is skipped
                tx.add_files(placed, snapshot_properties=props, check_duplicate_files=False)

    def replace_tenant(self, tdef: TableDef, tenant: str, data: pa.Table, run_id: str) -> None:
        table = self.table(tdef.name)
        data = data.cast(table.schema().as_arrow())
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Delete operation did not match any records")
            table.overwrite(data, overwrite_filter=EqualTo("tenant", tenant), snapshot_properties={RUN_PROPERTY: run_id})

    def record_converted(self, rows: pa.Table, run_id: str) -> None:
        table = self.table(tables.CONVERTED_FILES.name)
        table.append(rows.cast(table.schema().as_arrow()), snapshot_properties={RUN_PROPERTY: run_id})

    def drop_tenant(self, tenant: str, run_id: str) -> None:
        """Forget everything converted for ``tenant`` (``convert --full``)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Delete operation did not match any records")
            for tdef in tables.ALL:
                self.table(tdef.name).delete(EqualTo("tenant", tenant), snapshot_properties={RUN_PROPERTY: run_id})

    def _place(self, table: Table, files: list[str]) -> list[str]:
        """Move engine output from staging into the table's data folder; returns their URIs."""
        base = table.location().rstrip("/") + "/data"
        placed = []
        for src in files:
            rel = _partition_folder(src) + "/" + os.path.basename(src)
            dest = f"{base}/{rel}"
            local = local_path(dest)
            if local is not None:
                Path(local).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(src, local)
            else:
                with open(src, "rb") as f_in, table.io.new_output(dest).create(overwrite=True) as f_out:
                    shutil.copyfileobj(f_in, f_out, 8 * 1024 * 1024)
                os.unlink(src)
            placed.append(dest)
        return placed


_PART = re.compile(r"([a-z_]+)=([^/]+)")


def _partition_folder(path: str) -> str:
    """``tenant=x/event_date=y`` from an engine's output path."""
    parts = [m.group(1) + "=" + m.group(2) for seg in Path(path).parent.parts if (m := _PART.fullmatch(seg))]
    return "/".join(parts[-2:])
