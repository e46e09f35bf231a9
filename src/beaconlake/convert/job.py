"""One tenant's share of a convert run: update the identity map, then convert batches of days.

Which days are rewritten: every day a new raw file belongs to ("dirty"), plus its neighbours
within ``ceil(max_session_hours / 24)`` days, because a session that touches a dirty day can start
or end there. Each batch of consecutive days is computed from its days plus that many days of
context on each side, so sessions crossing the batch's edges come out whole. Two rare cases widen
the work: activity without a pause longer than the context (the chain's start is looked for
further back), and late events that add or merge sessions before already-converted ones (the
later days are re-converted so ``session_index`` stays a plain count).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
from pyiceberg.expressions import EqualTo

from beaconlake.backends.engine.base import Engine
from beaconlake.convert import bake, sessionize, tables
from beaconlake.convert.buckets import bucket_count
from beaconlake.convert.catalog import TableStore
from beaconlake.convert.errors import ConvertError
from beaconlake.convert.increment import Increment
from beaconlake.convert.lake import RawFile, RawLake, day_ms, ms_day
from beaconlake.convert.progress import Progress
from beaconlake.convert.promote import Promoted
from beaconlake.convert.quarantine import Quarantine, problem, read_problem
from beaconlake.convert.quarantine import keys as quarantined_keys
from beaconlake.convert.sessionize import BATCH_VIEWS, Bounds
from beaconlake.convert.settings import ConvertSettings
from beaconlake.lake import layout
from beaconlake.types import RAW_SCHEMA
from beaconlake.units import DAY_MS

log = logging.getLogger(__name__)

# How far back (beyond the usual context) to look for the start of uninterrupted activity.
# Only bots and kiosks get here; past it, their session cuts are anchored where the search stopped.
MAX_CHAIN_LOOKBACK_DAYS = 31
STORED_SESSION_COLUMNS = ("tenant", "anonymous_id", "session_id", "session_index", "start_ts")
ID_SCHEMA = pa.schema([("anonymous_id", pa.string()), ("user_id", pa.string()), ("event_ts", pa.int64())])


@dataclass
class RunContext:
    engine: Engine
    store: TableStore
    convert: ConvertSettings
    promoted: list[Promoted]
    run_id: str
    staging: str
    progress: Progress
    known: set[tuple[str, int]]  # (raw key, size) converted by earlier runs
    lake: RawLake
    quarantine: Quarantine
    full: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {"batches": 0, "days": 0, "events": 0, "incremental": 0})


class TenantJob:
    def __init__(self, ctx: RunContext, tenant: str, files: list[RawFile], new: list[RawFile]) -> None:
        self.ctx, self.tenant = ctx, tenant
        self.e, self.d = ctx.engine, ctx.engine.dialect
        self.files, self.new = files, new
        self.k = math.ceil(ctx.convert.max_session_hours / 24)
        self.bytes_by_day: dict[date, int] = {}
        for f in files:
            self.bytes_by_day[f.day] = self.bytes_by_day.get(f.day, 0) + f.size
        self.first_day = min(self.bytes_by_day)
        self._day_views: list[str] = []
        self._handed: dict[str, RawFile] = {}  # the raw files given to the engine in the current step

    def buckets(self, day: date) -> int:
        """How many buckets a rewrite of ``day`` splits its events into (buckets.py)."""
        return bucket_count(self.bytes_by_day.get(day, 0), self.ctx.convert.event_bucket_raw_kb * 1024)

    def paths(self, files: list[RawFile]) -> list[str]:
        self._handed.update((f.key, f) for f in files)
        return self.ctx.lake.engine_paths(files, Path(self.ctx.staging) / "raw", self.e)

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> None:
        self._surviving_bad_files(self._update_identities)
        pending: set[date] = set()
        for group in self._groups(self.new):
            increment = Increment(self, group)
            why = increment.not_applicable()
            if why is None:
                pending |= self._surviving_bad_files(increment.run)
                self.ctx.counts["incremental"] += 1
                continue
            log.debug("%s: rewriting whole days for %d new file(s): %s", self.tenant, len(group), why)
            for f in group:
                pending |= self.with_neighbours(f.day, back=True)
        while pending:
            days = self._next_batch(sorted(pending))
            pending -= set(days)
            pending |= self._surviving_bad_files(lambda days=days: self._convert_batch(days))

    def _surviving_bad_files(self, step):
        """Run ``step``; when it fails, find the raw files it gave the engine that do not read
        (a footer can be whole while a page is not), quarantine them, and run it again without
        them. A failure no file explains is raised as it is."""
        while True:
            self._handed = {}
            try:
                return step()
            except Exception as exc:  # engines raise errors of every kind; re-raised unless a file explains it
                lines = str(exc).strip().splitlines()
                said = f"the {self.e.name} engine stopped on it: {(lines[0] if lines else type(exc).__name__)[:300]}"
                if not [f for f in list(self._handed.values()) if self._quarantine_if_unreadable(f, said)]:
                    raise

    def _quarantine_if_unreadable(self, f: RawFile, said: str) -> bool:
        """Decode ``f`` whole with pyarrow, then with the engine alone; quarantine it if either fails."""
        found = problem(self.ctx.lake, f, read_problem)
        if found:
            moved = self.ctx.quarantine.put(f, f"{found} ({said})", read_problem)
        else:
            # pyarrow reads it, the engine does not: the engine's verdict on this one file decides
            [path] = self.ctx.lake.local_paths([f], Path(self.ctx.staging) / "raw")
            found = self.e.unreadable(path, RAW_SCHEMA)
            moved = found and self.ctx.quarantine.put(f, f"the {self.e.name} engine cannot read it: {found}", None)
        if not moved:
            return False
        self.files = [x for x in self.files if x.key != f.key]
        self.new = [x for x in self.new if x.key != f.key]
        self.bytes_by_day[f.day] -= f.size
        if not any(x.day == f.day for x in self.files):
            del self.bytes_by_day[f.day]  # a day without raw files left is emptied by its batch
        return True

    def _groups(self, files: list[RawFile]) -> list[list[RawFile]]:
        """New files in runs of days whose rewritten neighbourhoods touch: each is one batch."""
        groups: list[list[RawFile]] = []
        for f in sorted(files, key=lambda f: f.day):
            if groups and (f.day - groups[-1][-1].day).days <= 2 * self.k + 1:
                groups[-1].append(f)
            else:
                groups.append([f])
        return groups

    def with_neighbours(self, day: date, back: bool) -> set[date]:
        span = range(-self.k if back else 0, self.k + 1)
        return {day + timedelta(days=i) for i in span} & self.bytes_by_day.keys()

    def _next_batch(self, days: list[date]) -> list[date]:
        batch, size = [days[0]], self.bytes_by_day.get(days[0], 0)
        budget = self.ctx.convert.max_batch_mb * 1024 * 1024
        for day in days[1:]:
            if day != batch[-1] + timedelta(days=1) or size + self.bytes_by_day.get(day, 0) > budget:
                break
            batch.append(day)
            size += self.bytes_by_day.get(day, 0)
        return batch

    # -- identities ----------------------------------------------------------------------------

    def _update_identities(self) -> None:
        """Merge the user ids of this run's new files into the tenant's identity map, and register
        the map as the ``identities`` view for the batches."""
        # --full forgets the committed map: it is rebuilt from every raw file
        self.stored_view("identities", tables.IDENTITIES, [] if self.ctx.full else None)
        self.e.read_parquet("new_ids", self.paths(self.new), ID_SCHEMA)
        seen = self.e.materialize("new_obs", bake.new_identities_sql())  # one read of the new files
        merged = self.e.query(bake.identities_sql(self.d))
        if seen or self.ctx.full:
            data = merged.add_column(0, "tenant", pa.array([self.tenant] * merged.num_rows, pa.string()))
            self.ctx.store.replace_tenant(tables.IDENTITIES, self.tenant, data, self.ctx.run_id)
        self.e.drop("new_ids", "new_obs", "identities")
        self.e.register_arrow("identities", merged)

    def stored_view(self, view: str, tdef: tables.TableDef, paths: list[str] | None = None, columns=None) -> None:
        schema = self.ctx.store.arrow_schema(tdef.name)
        if columns:
            schema = pa.schema([schema.field(c) for c in columns])
        flt = EqualTo("tenant", self.tenant)
        if paths is None:
            paths = self.ctx.store.data_files(tdef.name, flt)
        if paths is None:  # not readable file by file: let pyiceberg read it
            data = self.ctx.store.table(tdef.name).scan(row_filter=flt, selected_fields=tuple(schema.names)).to_arrow()
            self.e.register_arrow(view, data.select(schema.names).cast(schema))
        else:
            self.e.read_parquet(view, paths, schema)

    # -- one batch -----------------------------------------------------------------------------

    def bounds(self, r0: int, r1: int) -> Bounds:
        cs = self.ctx.convert
        return Bounds(self.tenant, r0, r1, r0 - self.k * DAY_MS, r1 + self.k * DAY_MS,
                      cs.session_gap_mins * 60_000, cs.max_session_hours * 3_600_000)

    def _convert_batch(self, days: list[date]) -> set[date]:
        """Rewrite ``days``; returns later days that now need rewriting too."""
        context: list[RawFile] = []

        def register(b: Bounds) -> None:
            context[:] = self._register_raw(b)

        b, later = self.sessionized(self.bounds(day_ms(days[0]), day_ms(days[-1]) + DAY_MS), register)
        self.stored_view("stored_sessions", tables.SESSIONS, columns=STORED_SESSION_COLUMNS)
        later |= self.baked(b)
        events = self.e.materialize("evk", bake.event_keys_sql(b, self.d))
        self.e.drop("ev")  # evk has what the writes need
        self._write_and_commit(b, days, context)
        batch_files = [f for f in self.new if days[0] <= f.day <= days[-1]]
        self.record(batch_files)
        self.e.drop("raw", "evk", *BATCH_VIEWS, *self._day_views)
        self.batch_done(days, batch_files, events)
        return {d for d in later if d > days[-1]}

    def batch_done(self, days: list[date], files: list[RawFile], events: int) -> None:
        self.ctx.counts["batches"] += 1
        self.ctx.counts["days"] += len(days)
        self.ctx.counts["events"] += events
        self.ctx.progress.batch_done(self.tenant, str(days[0]), str(days[-1]), len(files), events)

    def sessionized(self, b: Bounds, register) -> tuple[Bounds, set[date]]:
        """``register(b)`` the raw rows for ``b`` as ``raw`` and sessionize them; while chains may
        start before the context, widen it backwards and start again. Returns the final bounds
        and the later days a long chain's moved cut points reach."""
        while True:
            register(b)
            self._sessionize(b)
            chains = self.e.query(sessionize.chain_check_sql(b)).to_pylist()
            early = [c for c in chains if c["chain_start"] < b.c0 + b.gap_ms and c["chain_end"] >= b.r0]
            lookback = (b.r0 - b.c0) // DAY_MS
            if early and day_ms(self.first_day) < b.c0 and lookback < self.k + MAX_CHAIN_LOOKBACK_DAYS:
                b = Bounds(b.tenant, b.r0, b.r1, b.c0 - self.k * DAY_MS, b.c1, b.gap_ms, b.max_ms)
                continue
            if early and day_ms(self.first_day) < b.c0:
                log.warning("%s: %d anonymous id(s) were active without a pause for over %d days before %s; "
                            "their sessions are cut from %s", self.tenant, len(early), lookback, ms_day(b.r0),
                            ms_day(b.c0))
            break
        later: set[date] = set()
        for c in chains:
            if c["pieces"] > 0 and c["chain_end"] >= b.r1:  # cut points of a long chain moved
                for i in range((c["chain_end"] - b.r1) // DAY_MS + 1):
                    later |= self.with_neighbours(ms_day(b.r1) + timedelta(days=i), back=False)
        return b, later

    def baked(self, b: Bounds) -> set[date]:
        """Page views and sessions (``pv``, ``sess``) from ``ev``, ``sess0`` and ``stored_sessions``;
        returns the later days whose session_index no longer follows on."""
        self.e.materialize("pv", bake.pageviews_sql(b, self.d))
        self.e.materialize("sess", bake.sessions_sql(b, self.d))
        return {d for row in self.e.query(bake.renumber_sql(b, self.d)).to_pylist()
                for d in self.with_neighbours(ms_day(row["day_no"] * DAY_MS), back=False)}

    def _register_raw(self, b: Bounds) -> list[RawFile]:
        """Register the raw files of the context days as ``raw``; returns them, in the order their
        row keys number them (by day, so each day's files are a slice)."""
        lo, hi = ms_day(b.c0), ms_day(b.c1 - 1)
        context = sorted((f for f in self.files if lo <= f.day <= hi), key=lambda f: (f.day, f.key))
        self._check_complete(lo, hi, context)
        self.e.read_parquet("raw", self.paths(context), RAW_SCHEMA, key_offset=0)
        return context

    def _sessionize(self, b: Bounds) -> None:
        """Compute ``ev`` and ``sess0`` from ``raw``."""
        self.e.materialize("batch_anons", sessionize.batch_anons_sql(b))
        self.e.materialize("dups", sessionize.dups_sql(b, self.d))
        self.e.materialize("slim", sessionize.slim_sql(b, self.d))
        self.e.materialize("dropped", sessionize.dropped_sql(b, self.d))
        self.e.materialize("win", sessionize.windows_sql(b, self.d))
        self.e.materialize("ev", sessionize.events_sql(b, self.d))
        self.e.drop("win", "slim", "dropped")  # ev has what the rest needs
        self.e.materialize("sess0", bake.sessions0_sql(b, self.d))

    def _check_complete(self, lo: date, hi: date, context: list[RawFile]) -> None:
        """Refuse to rewrite days from fewer raw files than they were converted from."""
        listed = {f.key for f in context}
        prefix = layout.raw_prefix(self.tenant)
        gone = sorted(
            key for key, _size in self.ctx.known
            if key.startswith(prefix) and key not in listed and lo <= _day_of(key) <= hi
        )
        if gone:  # a file that went to quarantine is accounted for: its reason record says what was lost
            gone = sorted(set(gone) - quarantined_keys(self.ctx.quarantine.storage, self.tenant))
        if gone:
            raise ConvertError(
                f"{len(gone)} raw file(s) converted by an earlier run are gone from the lake, e.g. {gone[0]}; "
                f"re-converting {lo}..{hi} would drop their events. Restore them, or rebuild with "
                "`beaconlake convert --full` to accept the loss"
            )

    def _write_and_commit(self, b: Bounds, days: list[date], context: list[RawFile]) -> None:
        """Write the batch's days, then commit table by table.

        Each table gets one query for all the days. The tables read from raw files (events, high
        level events) also get one per day, for engines that write partition by partition: the
        per-day queries read only that day's raw files (their row keys line up with the batch's,
        since ``context`` is ordered by day). Sessions and page views are small and come from
        materialized results: one partitioned write does them faster than a write per day."""
        days = [d for d in days if any(f.day == d for f in context)]  # days without raw data stay empty
        index = {f.key: i for i, f in enumerate(context)}

        def view(name: str, files: list[RawFile]) -> str:
            self.e.read_parquet(name, self.paths(files), RAW_SCHEMA, key_offset=index[files[0].key] if files else 0)
            self._day_views.append(name)
            return name

        self._day_views = []
        raw_r = view("raw_r", [f for f in context if days and days[0] <= f.day <= days[-1]])
        buckets = {day: self.buckets(day) for day in days}
        whole = {
            tables.EVENTS.name: bake.with_bucket(self.d, bake.events_out_sql(b, self.d, b.r0, b.r1, raw_r, self.ctx.promoted),
                                                 buckets),
            tables.HIGH_LEVEL_EVENTS.name: bake.high_level_out_sql(b, self.d, b.r0, b.r1, raw_r),
            tables.SESSIONS.name: bake.sessions_out_sql(b, self.d, b.r0, b.r1),
            tables.PAGEVIEWS.name: bake.pageviews_out_sql(b, self.d, b.r0, b.r1),
        }
        parts: dict[str, list] = {tables.EVENTS.name: [], tables.HIGH_LEVEL_EVENTS.name: []}
        for i, day in enumerate(days):
            lo, hi, where = day_ms(day), day_ms(day) + DAY_MS, (self.tenant, day.isoformat())
            raw = view(f"raw_d{i}", [f for f in context if f.day == day])
            parts[tables.EVENTS.name].append((where, bake.with_bucket(
                self.d, bake.events_out_sql(b, self.d, lo, hi, raw, self.ctx.promoted), {day: buckets[day]})))
            highs = [f for f in context if f.day == day and f.level == "high"]
            if highs:
                high = view(f"high_d{i}", highs)
                parts[tables.HIGH_LEVEL_EVENTS.name].append((where, bake.high_level_out_sql(b, self.d, lo, hi, high)))
        written = {}
        for tdef in tables.BAKED:
            folder = self.ctx.store.output_folder(tdef, self.e, os.path.join(self.ctx.staging, tdef.name),
                                                  self.ctx.run_id)
            written[tdef.name] = self.e.write_parquet(
                whole[tdef.name], folder, ["tenant", tdef.date_column], self.ctx.convert.target_file_mb,
                parts=parts.get(tdef.name), bucket="bucket" if tdef is tables.EVENTS else None)
        # one commit per table; the converted-files record comes last, so a crash in between
        # means the batch is simply redone by the next run
        for tdef in tables.BAKED:
            self.ctx.store.replace_days(tdef, self.tenant, b.r0, b.r1, written[tdef.name], self.ctx.run_id)

    def record(self, files: list[RawFile]) -> None:
        if not files:
            return
        now = datetime.now(UTC)
        rows = pa.table({
            "raw_key": [f.key for f in files],
            "size_bytes": pa.array([f.size for f in files], pa.int64()),
            "tenant": [f.tenant for f in files],
            "day": pa.array([f.day for f in files], pa.date32()),
            "run_id": [self.ctx.run_id] * len(files),
            "converted_ts": pa.array([now] * len(files), pa.timestamp("us", tz="UTC")),
        })
        self.ctx.store.record_converted(rows, self.ctx.run_id)


def _day_of(key: str) -> date:
    parsed = layout.parse_raw(key)
    return parsed.day if parsed else date.min
