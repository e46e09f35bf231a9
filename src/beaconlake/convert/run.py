"""``beaconlake convert``: the incremental job from the raw lake to the Iceberg tables.

A run lists the raw lake, compares it with the ``converted_files`` table (raw key and size of
every file a run has committed), and converts the difference tenant by tenant. Running it again
with nothing new does nothing; a file delivered again with the same content is not new; after a
crash, the batches whose files were not recorded are redone, and since a batch replaces whole
days, redoing one never duplicates rows.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from beaconlake.backends.catalog import open_catalog
from beaconlake.backends.catalog.settings import CatalogSettings
from beaconlake.backends.coordination import Lease
from beaconlake.backends.engine import Engine, open_engine
from beaconlake.backends.engine.settings import EngineSettings
from beaconlake.backends.storage import open_storage
from beaconlake.config import Settings
from beaconlake.convert.catalog import TableStore
from beaconlake.convert.errors import ConvertError
from beaconlake.convert.fence import FencedStore, run_lease
from beaconlake.convert.job import RunContext, TenantJob
from beaconlake.convert.lake import RawFile, RawLake, day_ms
from beaconlake.convert.maintain import Maintenance, maintain
from beaconlake.convert.progress import Progress
from beaconlake.convert.promote import keep_existing_types, promoted_columns
from beaconlake.convert.quarantine import Quarantine, Quarantined, page_problem, problem
from beaconlake.convert.settings import ConvertSettings, sections_of
from beaconlake.convert.tables import EVENTS
from beaconlake.files import replace_file
from beaconlake.units import DAY_MS

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    run_id: str
    new_files: int
    events: int  # rows written to the events table (rewritten days included)
    batches: int
    days: int  # tenant-days rewritten
    late_files: int  # new files for days more than late_arrival_hours behind the newest
    seconds: float
    # raw files this run moved to the lake's quarantine/ area instead of converting, with why
    quarantined: list[Quarantined] = field(default_factory=list)
    maintenance: Maintenance | None = None  # None: not due in this run
    incremental: int = 0  # batches that rewrote only the new files' people (increment.py), of `batches`

    @property
    def events_per_sec(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


Sections = tuple[ConvertSettings, EngineSettings, CatalogSettings]


def open_store(settings: Settings, sections: Sections | None = None, hold: bool = False) -> TableStore:
    convert, _engine, catalog = sections or sections_of(settings)
    warehouse = convert.warehouse_uri(settings.data_dir)
    return TableStore(open_catalog(catalog, settings.data_dir, warehouse, settings.storage), convert.namespace, hold)


def _late(new: list[RawFile], files: list[RawFile], known: set[tuple[str, int]], late_hours: int) -> list[RawFile]:
    """New files for days that were converted before and ended more than ``late_hours`` before the
    newest day in the lake: readers may have taken those days as final."""
    converted = {(f.tenant, f.day) for f in files if (f.key, f.size) in known}
    newest = max(day_ms(f.day) for f in files)
    return [f for f in new if (f.tenant, f.day) in converted and day_ms(f.day) + DAY_MS + late_hours * 3_600_000 < newest]


MAINTENANCE_MARK = "convert-maintenance.json"


def _clean_staging(root: Path, keep: str) -> None:
    """Remove what interrupted runs left in ``root`` (call with the run lease held: no other
    run is writing there)."""
    if not root.is_dir():
        return
    stale = [p for p in root.iterdir() if p.name != keep]
    size = 0
    for p in stale:
        size += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    if stale:
        log.info("removed %d staging folder(s) of interrupted convert runs (%.1f MB)", len(stale), size / 1e6)


def _maintain_if_due(store: TableStore, cs: ConvertSettings, run_dir: Path) -> Maintenance | None:
    """Warehouse maintenance (maintain.py) when ``maintenance_interval_hours`` have passed since the
    last pass recorded in ``run_dir``."""
    if not cs.maintenance_enabled:
        return None
    mark = run_dir / MAINTENANCE_MARK
    now_ms = time.time_ns() // 1_000_000
    try:
        last = json.loads(mark.read_text())["last_ms"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        last = 0
    if now_ms - last < cs.maintenance_interval_hours * 3_600_000:
        return None
    done = maintain(store, cs.snapshot_retention_hours, cs.orphan_min_age_hours, now_ms)
    replace_file(mark, json.dumps({"last_ms": now_ms}).encode(), mark.with_suffix(".tmp"))
    log.info("warehouse maintenance: %d snapshot(s) expired, %d file(s) only they needed and %d orphan file(s) "
             "deleted, %.1f MB freed", done.snapshots_expired, done.files_deleted, done.orphans_deleted,
             done.bytes_deleted / 1e6)
    return done


# New files in an object store are checked a few at a time: each is a round trip or two. Local
# files one at a time: the check is Python, and threads only contend for the GIL (bench/convert's
# 3,288 files: 4.0-4.2 s in one thread, 5.0-5.4 s and half as much CPU again in eight).
FILE_CHECK_THREADS = 8


def _unreadable(lake: RawLake, files: list[RawFile]) -> list[tuple[RawFile, str]]:
    """The files the engines cannot read, or would read wrong, with the reason (``page_problem``)."""
    if not files:
        return []
    def check(f: RawFile) -> str | None:
        return problem(lake, f, page_problem)

    if lake.storage.capabilities.local_paths:
        problems = list(map(check, files))
    else:
        with ThreadPoolExecutor(min(FILE_CHECK_THREADS, len(files))) as pool:
            problems = list(pool.map(check, files))
    return [(f, p) for f, p in zip(files, problems, strict=True) if p]


def convert(
    settings: Settings,
    *,
    sections: Sections | None = None,
    tenants: set[str] | None = None,
    full: bool = False,
    engine: Engine | None = None,
    progress: bool = True,
    lease: Lease | None = None,
) -> RunSummary:
    """Convert what is new in the raw lake (of ``tenants``; all when None).

    ``sections``: the convert, engine and catalog settings (default: those of ``settings``).
    ``engine``: an open engine to use instead of opening one from the settings (not closed here).
    ``full``: re-convert every raw file, and rebuild the identity map from scratch.
    ``lease``: the run lease the caller's run holds (the scheduler's); None: taken here (fence.py)."""
    started = time.monotonic()
    sections = sections or sections_of(settings)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]
    run_dir = Path(settings.data_dir) / "run"
    # one run at a time in the whole deployment, every commit fenced by the run lease (fence.py)
    with run_lease(settings, lease, lambda who: ConvertError(
            f"another convert run holds the run lease: {who}; wait for it to finish")) as held:
        return _convert(settings, sections, tenants, full, engine, progress, held, run_id, run_dir, started)


def _convert(settings: Settings, sections: Sections, tenants: set[str] | None, full: bool, engine: Engine | None,
             progress: bool, lease: Lease, run_id: str, run_dir: Path, started: float) -> RunSummary:
    convert_settings, engine_settings, _ = sections
    staging = run_dir / "convert-staging" / run_id
    try:
        _clean_staging(staging.parent, keep=run_id)
        store = FencedStore(open_store(settings, sections, hold=True), lease)
        promoted = promoted_columns(settings.tenants)
        store.ensure(promoted)
        keep_existing_types(promoted, {f.name: f.type for f in store.arrow_schema(EVENTS.name)})

        storage = open_storage(settings.storage)
        lake = RawLake(storage)
        files = lake.list(tenants)
        known = store.converted()
        new = files if full else [f for f in files if (f.key, f.size) not in known]
        # a file the engines cannot read (or would read wrong) is moved aside before it can fail a batch
        quarantine = Quarantine(storage, run_id)
        for f, reason in _unreadable(lake, new):
            quarantine.put(f, reason, page_problem)
        if quarantine.moved:
            gone = {q.key for q in quarantine.moved}
            files = [f for f in files if f.key not in gone]
            new = [f for f in new if f.key not in gone]
        late = _late(new, files, known, convert_settings.late_arrival_hours) if new and not full else []
        if late:
            log.warning(
                "%d new raw file(s) belong to days more than late_arrival_hours (%d) behind the newest day, "
                "e.g. %s: merged, but these days had been final",
                len(late), convert_settings.late_arrival_hours, late[0].key,
            )
        log.info("convert run %s: %d raw file(s), %d new", run_id, len(files), len(new))

        bar = Progress(len(new), enabled=progress)
        own_engine = engine is None
        if new and own_engine:
            engine = open_engine(engine_settings, settings.data_dir, storage=settings.storage)
        ctx = RunContext(engine, store, convert_settings, promoted, run_id, str(staging), bar, known,
                         lake, quarantine, full)
        try:
            for tenant in sorted({f.tenant for f in new}):
                mine = [f for f in files if f.tenant == tenant]
                TenantJob(ctx, tenant, mine, [f for f in new if f.tenant == tenant]).run()
        finally:
            bar.close()
            if own_engine and engine is not None:
                engine.close()
        lease.check()  # maintenance expires snapshots and deletes files
        maintenance = _maintain_if_due(store, convert_settings, run_dir)
        summary = RunSummary(run_id, len(new), ctx.counts["events"], ctx.counts["batches"], ctx.counts["days"],
                             len(late), time.monotonic() - started, list(quarantine.moved), maintenance,
                             ctx.counts["incremental"])
        log.info("convert run %s: %d new file(s), %d batch(es), %d tenant-day(s), %s events in %.1f s (%s events/s)",
                 run_id, summary.new_files, summary.batches, summary.days, f"{summary.events:,}", summary.seconds,
                 f"{summary.events_per_sec:,.0f}")
        if summary.quarantined:
            log.warning("convert run %s: %d raw file(s) quarantined (see %s in the lake)", run_id,
                        len(summary.quarantined), "quarantine/")
        return summary
    finally:
        shutil.rmtree(staging, ignore_errors=True)
