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
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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
from pyiceberg.io.pyarrow import parquet_file_to_data_file
from pyiceberg.manifest import DataFile, ManifestContent
from pyiceberg.table import Table, TableProperties

from beaconlake.backends.engine.base import Engine
from beaconlake.convert import tables
from beaconlake.convert.commits import RUN_PROPERTY, commit_with_retry, no_new_data, transaction
from beaconlake.convert.errors import ConvertError
from beaconlake.convert.lake import EPOCH, ms_day
from beaconlake.convert.promote import Promoted
from beaconlake.convert.tables import TableDef, iceberg_schema, partition_spec

log = logging.getLogger(__name__)
# Under a table's data folder, the folder of each run's files that an engine wrote in place.
RUN_FOLDER = "runs"
# Table properties that keep metadata from piling up: appends merge small manifests (a run adds
# one per table), and a commit deletes metadata files beyond the newest 20. Commits are retried by
# beaconlake (commits.py), with the rechecks a blind rebuild skips (pyiceberg's own retry would
# append converted_files rows another run just committed): the library's retry is off.
TABLE_PROPERTIES = {
    "write.parquet.compression-codec": "zstd",
    "commit.manifest-merge.enabled": "true",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
    "commit.retry.num-retries": "0",
}


def local_path(uri: str) -> str | None:
    """A local filesystem path for a file:// URI or a bare path; None for remote URIs."""
    if "://" not in uri:
        return uri
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else None


@dataclass(frozen=True)
class DayFile:
    file: DataFile
    day: date

    @property
    def uri(self) -> str:
        return self.file.file_path


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


class TableStore:
    """The convert stage's tables in a catalog. With ``hold``, each table is loaded once and kept:
    for a convert run, which holds the convert lock and commits through these very objects (a
    commit updates the object it went through; a conflicting commit from elsewhere fails it)."""

    def __init__(self, catalog: Catalog, namespace: str, hold: bool = False) -> None:
        self.catalog = catalog
        self.namespace = namespace
        self._held: dict[str, Table] | None = {} if hold else None
        self._files: dict[tuple[str, int | None], list[DayFile]] = {}

    def ident(self, name: str) -> str:
        return f"{self.namespace}.{name}"

    def table(self, name: str) -> Table:
        if self._held is None:
            return self.catalog.load_table(self.ident(name))
        if name not in self._held:
            self._held[name] = self.catalog.load_table(self.ident(name))
        return self._held[name]

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
                with transaction(table) as tx:
                    tx.set_properties(TABLE_PROPERTIES)
        events = self.table(tables.EVENTS.name)
        have = {f.name for f in events.schema().fields}
        # columns of a newer version (``source``) first, then the promoted ones, in that order
        missing = [(name, dtype) for name, dtype, _doc in tables.EVENT_COLUMNS if name not in have]
        missing += [(p.column, p.type) for p in promoted if p.column not in have]
        if missing:
            with events.update_schema() as update:
                for name, dtype in missing:
                    update.add_column(name, iceberg_schema(pa.schema([pa.field(name, dtype)])).fields[0].field_type)
            log.info("events: added column(s) %s", ", ".join(name for name, _ in missing))

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

    def register(self, engine: Engine, name: str) -> None:
        """Make table ``name`` readable in ``engine`` under its name: its data files read in place
        when they are local, or remote and the engine reaches them (Spark with S3A), else the
        table read through pyiceberg (remote files, delete files)."""
        paths = self.data_files(name)
        if paths is None and not engine.capabilities.in_process:
            tasks = list(self.table(name).scan().plan_files())
            if not any(t.delete_files for t in tasks) and all(engine.reaches(t.file.file_path) for t in tasks):
                paths = [t.file.file_path for t in tasks]
        if paths is None:
            engine.register_arrow(name, self.table(name).scan().to_arrow())
        else:
            engine.read_parquet(name, paths, self.arrow_schema(name))

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

        def commit(table: Table) -> None:
            with transaction(table) as tx, warnings.catch_warnings():
                # a first conversion deletes nothing, and pyiceberg warns about that
                warnings.filterwarnings("ignore", "Delete operation did not match any records")
                tx.delete(days, snapshot_properties=props)
                if placed:
                    # file names are fresh UUIDs, so the duplicate check (a scan of every manifest) is skipped
                    tx.add_files(placed, snapshot_properties=props, check_duplicate_files=False)

        lo, hi = (ms_day(r0) - EPOCH).days, (ms_day(r1 - 1) - EPOCH).days
        commit_with_retry(self.ident(tdef.name), table, commit,
                          no_new_data(lambda f: f.partition[0] == tenant and lo <= f.partition[1] <= hi))

    def day_files(self, tdef: TableDef, tenant: str, r0: int, r1: int) -> list[DayFile]:
        """The data files of ``tenant``'s days [r0, r1) of a table partitioned by tenant and day,
        from the current snapshot's manifests (read once per snapshot)."""
        table = self.table(tdef.name)
        snapshot = table.current_snapshot()
        key = (tdef.name, snapshot.snapshot_id if snapshot else None)
        if key not in self._files:
            files = []
            for manifest in snapshot.manifests(table.io) if snapshot else []:
                if manifest.content != ManifestContent.DATA:
                    raise ConvertError(f"{tdef.name} has delete files (written by another tool): "
                                       "run `beaconlake convert --full` to rewrite it")
                for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                    files.append(DayFile(entry.data_file, EPOCH + timedelta(days=entry.data_file.partition[1])))
            self._files = {k: v for k, v in self._files.items() if k[0] != tdef.name}
            self._files[key] = files
        lo, hi = ms_day(r0), ms_day(r1 - 1)
        return [f for f in self._files[key] if f.file.partition[0] == tenant and lo <= f.day <= hi]

    def replace_files(self, tdef: TableDef, deleted: list[DataFile], files: list[str], run_id: str) -> None:
        """Swap exactly the data files ``deleted`` for ``files`` (engine output), in one commit."""
        if not deleted and not files:
            return
        table = self.table(tdef.name)
        placed = self._place(table, files)

        def commit(table: Table) -> None:
            with transaction(table) as tx:
                if tx.table_metadata.name_mapping() is None:  # engine files carry no field ids: map by name
                    tx.set_properties(**{TableProperties.DEFAULT_NAME_MAPPING:
                                         tx.table_metadata.schema().name_mapping.model_dump_json()})
                with tx.update_snapshot(snapshot_properties={RUN_PROPERTY: run_id}).overwrite() as overwrite:
                    for f in deleted:
                        overwrite.delete_data_file(f)
                    for path in placed:
                        overwrite.append_data_file(parquet_file_to_data_file(table.io, tx.table_metadata, path))

        def still_there(table: Table, since: list) -> str | None:
            live = {task.file.file_path for task in table.scan().plan_files()} if deleted else set()
            gone = [f.file_path for f in deleted if f.file_path not in live]
            return f"{len(gone)} file(s) this swap deletes are gone, e.g. {gone[0]}" if gone else None

        commit_with_retry(self.ident(tdef.name), table, commit, still_there)

    def replace_tenant(self, tdef: TableDef, tenant: str, data: pa.Table, run_id: str) -> None:
        table = self.table(tdef.name)

        def commit(table: Table) -> None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Delete operation did not match any records")
                table.overwrite(data.cast(table.schema().as_arrow()), overwrite_filter=EqualTo("tenant", tenant),
                                snapshot_properties={RUN_PROPERTY: run_id})

        commit_with_retry(self.ident(tdef.name), table, commit, no_new_data(lambda f: f.partition[0] == tenant))

    def record_converted(self, rows: pa.Table, run_id: str) -> None:
        """Append ``converted_files`` rows; on a conflict, rows another run committed first are dropped."""
        conflicted = False

        def recheck(table: Table, since: list) -> None:
            nonlocal conflicted
            conflicted = True  # the retry re-reads what is committed now

        def commit(table: Table) -> None:
            new = rows
            if conflicted:
                have = self.converted()
                keys = zip(rows.column("raw_key").to_pylist(), rows.column("size_bytes").to_pylist(), strict=True)
                new = rows.filter(pa.array([key not in have for key in keys], pa.bool_()))
                if new.num_rows < rows.num_rows:
                    log.warning("converted_files: %d of %d row(s) were committed by another run meanwhile; "
                                "not added again", rows.num_rows - new.num_rows, rows.num_rows)
            if new.num_rows:
                table.append(new.cast(table.schema().as_arrow()), snapshot_properties={RUN_PROPERTY: run_id})

        commit_with_retry(self.ident(tables.CONVERTED_FILES.name), self.table(tables.CONVERTED_FILES.name), commit,
                          recheck)

    def drop_tenant(self, tenant: str, run_id: str) -> None:
        """Forget everything converted for ``tenant`` (``convert --full``)."""
        for tdef in tables.ALL:
            def commit(table: Table) -> None:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "Delete operation did not match any records")
                    table.delete(EqualTo("tenant", tenant), snapshot_properties={RUN_PROPERTY: run_id})

            commit_with_retry(self.ident(tdef.name), self.table(tdef.name), commit)

    def output_folder(self, tdef: TableDef, engine: Engine, staging: str, run_id: str) -> str:
        """Where ``engine`` writes new files of ``tdef``: into the table's own data folder when the
        engine runs apart from this process and reaches it (Spark: its executors write the files
        where they stay, on a shared mount or S3A, no copy through this machine), else ``staging``
        on this machine, from which a commit moves or uploads them (``_place``)."""
        data = self.table(tdef.name).location().rstrip("/") + "/data"
        if engine.capabilities.in_process or not engine.reaches(data):
            return staging
        return f"{data}/{RUN_FOLDER}/{run_id}"

    def _place(self, table: Table, files: list[str]) -> list[str]:
        """Move engine output from staging into the table's data folder; returns their URIs.
        Files an engine wrote into the table's location already stay where they are."""
        base = table.location().rstrip("/") + "/data"
        placed = []
        for src in files:
            if src.startswith(base + "/"):
                placed.append(src)
                continue
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
    """``tenant=x/event_date=y`` (and ``bucket=z``, see buckets.py) from an engine's output path."""
    parts = [m.group(1) + "=" + m.group(2) for seg in Path(path).parent.parts if (m := _PART.fullmatch(seg))]
    bucket = [p for p in parts if p.startswith("bucket=")]
    return "/".join([p for p in parts if not p.startswith("bucket=")][-2:] + bucket[-1:])
