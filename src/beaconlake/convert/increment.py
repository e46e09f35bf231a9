"""The incremental path: convert a few new raw files by rewriting what they change, not whole days.

Only the people (anonymous ids) with new events can change: a person's sessions, page views,
session indexes and stitched user depend on that person's events and the identity map, which
changes only through that person's events. So a batch

1. takes the affected people (``merge.affected_sql``) and their committed history from the events
   table, turned back into raw rows: only the files of their buckets (buckets.py) and the days'
   appended files are read, never the raw lake's old files;
2. runs the same dedupe, sessionization and baking SQL as a full rewrite on those rows;
3. replaces, per table and day, only the files holding affected people's rows, with those files'
   other rows copied unchanged plus the recomputed ones; on a day where the affected people's
   committed events all come back unchanged (new events only extend their sessions), the new
   events are appended as a file of their own instead; once a day's appended files hold
   ``MAX_APPENDED_SHARE`` of its events, the next change compacts them into its buckets.

So the result is row for row what a full rewrite gives. A batch whose days hold unbucketed event
files, whose bucket count no longer suits the day's size, whose new raw files are a large share
of its days, or that has a file delivered again with other content, takes the full rewrite
instead (``not_applicable``), as do later days whose session numbering it shifts. Crash safety
is the full rewrite's: each table is one commit, the converted files are recorded last, and a
redone batch finds its own committed events among the history, which the dedupe folds back.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import defaultdict
from datetime import date
from pathlib import Path

import pyarrow as pa

from beaconlake.convert import bake, buckets, merge, tables
from beaconlake.convert.catalog import DayFile, local_path
from beaconlake.convert.lake import RawFile, day_ms, ms_day
from beaconlake.convert.sessionize import BATCH_VIEWS, Bounds
from beaconlake.types import RAW_SCHEMA
from beaconlake.units import DAY_MS

log = logging.getLogger(__name__)

# A batch whose new raw files exceed this share of its days' raw bytes is cheaper to rewrite.
MAX_NEW_SHARE = 0.25
# A day's appended event files are compacted into its buckets by the next change once they hold
# this share of the day's event bytes or are this many: compaction rewrites about the whole day,
# so its cost, spread over the runs that appended, stays proportional to what they added.
MAX_APPENDED_SHARE = 0.1
MAX_APPENDED_FILES = 32
OWNER_COLUMNS = pa.schema([("event_id", pa.string()), ("anonymous_id", pa.string())])


class Increment:
    """One incremental batch of a tenant: the new files of one run of consecutive days."""

    def __init__(self, job, new: list[RawFile]) -> None:
        self.job, self.e, self.d = job, job.e, job.d
        self.store = job.ctx.store
        self.keys = {f.key for f in new}
        self.days = sorted({d for f in new for d in job.with_neighbours(f.day, back=True)})
        self.events_schema = self.store.arrow_schema(tables.EVENTS.name)
        self.produced = {f.name for f in self.events_schema} & (
            {name for name, _t, _doc in tables.EVENT_COLUMNS} | {p.column for p in job.ctx.promoted})
        self._views: list[str] = []  # per-day views of this batch, dropped at its end

    @property
    def new(self) -> list[RawFile]:  # re-read: a step retried without a quarantined file has fewer
        return [f for f in self.job.new if f.key in self.keys]

    def _day_files(self, tdef: tables.TableDef, lo: int, hi: int) -> list[DayFile]:
        return self.store.day_files(tdef, self.job.tenant, lo, hi)

    # -- when ------------------------------------------------------------------------------------

    def not_applicable(self) -> str | None:
        """Why this batch takes the full rewrite instead, or None."""
        job = self.job
        if job.ctx.full:
            return "--full"
        known = {key for key, _size in job.ctx.known}
        again = [f.key for f in self.new if f.key in known]
        if again:
            return f"{again[0]} was delivered again with other content"
        span = sum(job.bytes_by_day.get(d, 0) for d in self.days)
        if sum(f.size for f in self.new) > MAX_NEW_SHARE * span:
            return "the new files are a large share of their days"
        files = self._day_files(tables.EVENTS, day_ms(self.days[0]), day_ms(self.days[-1]) + DAY_MS)
        if not files:
            return "no events converted for these days yet"
        for day in self.days:
            kinds = {buckets.of_path(f.uri) for f in files if f.day == day} - {buckets.DELTA}
            if None in kinds:
                return f"{day} has events files from before the bucketed layout"
            counts = {buckets.split_id(k)[0] for k in kinds}
            if len(counts) > 1 or (counts and job.buckets(day) > 2 * counts.pop()):
                return f"{day} has outgrown its bucket count"
        return None

    # -- the batch -------------------------------------------------------------------------------

    def run(self) -> set[date]:
        """Convert the batch; returns later days that need a full rewrite (their session numbering moved)."""
        job = self.job
        new = self.new
        job.e.read_parquet("new_raw", job.paths(new), RAW_SCHEMA, key_offset=0)
        b = job.bounds(day_ms(self.days[0]), day_ms(self.days[-1]) + DAY_MS)
        r_files = self._day_files(tables.EVENTS, b.r0, b.r1)
        self.e.read_parquet("ev_ids", [self._local(f) for f in r_files], OWNER_COLUMNS)
        self.e.materialize("affected", merge.affected_sql(bool(r_files)))
        people = self.e.query("SELECT anonymous_id FROM affected").column(0).to_pylist()
        b, later = job.sessionized(b, lambda bounds: self._register(bounds, people, len(new)))
        job.stored_view("stored_all", tables.SESSIONS, columns=("tenant", "anonymous_id", "session_id",
                                                                 "session_index", "start_ts"))
        self.e.materialize("stored_sessions", f"SELECT * FROM stored_all s WHERE {merge.is_affected('s')}")
        later |= job.baked(b)
        events = self.e.materialize("evk", bake.event_keys_sql(b, self.d))
        self.e.drop("ev", "stored_all")
        touched = self._touched(b)
        self._write_and_commit(b, touched)
        job.record(new)
        self.e.drop("new_raw", "ev_ids", "affected", "hist_ev", "hist_raw", "raw", "evk", *BATCH_VIEWS, *self._views)
        job.batch_done(sorted(touched) or self.days, new, events)
        log.debug("%s: incremental batch %s..%s, %d affected people", job.tenant, self.days[0], self.days[-1], len(people))
        return {d for d in later if d > self.days[-1]}

    def _register(self, b: Bounds, people: list[str], offset: int) -> None:
        """``raw`` for ``b``: the new rows and the affected people's committed events of the context."""
        context = self._day_files(tables.EVENTS, b.c0, b.c1)
        wanted: dict[date, set] = {}
        for f in context:
            kind = buckets.of_path(f.uri)
            if kind not in (None, buckets.DELTA) and f.day not in wanted:
                n = buckets.split_id(kind)[0]
                wanted[f.day] = {buckets.bucket_id(p, n) for p in people}
        hist = [f for f in context
                if buckets.of_path(f.uri) in (None, buckets.DELTA) or buckets.of_path(f.uri) in wanted.get(f.day, ())]
        # the affected people's rows, read once: a bucket file holds many other people, and the
        # history is scanned again for each day's changed and appended rows
        self.e.read_parquet("hist_files", [self._local(f) for f in hist], self.events_schema, key_offset=offset)
        self.e.materialize("hist_ev", f"SELECT * FROM hist_files h WHERE {merge.is_affected('h')}")
        self.e.drop("hist_files")
        self.e.materialize("hist_raw", merge.history_raw_sql(self.d))
        self.e.materialize("raw", merge.raw_sql())

    def _touched(self, b: Bounds) -> dict[date, set[str]]:
        """Per rewritten day, the affected people with rows on it (committed or new)."""
        rows = self.e.query(f"SELECT DISTINCT CAST(floor(event_ts / {DAY_MS}) AS BIGINT) AS day_no, anonymous_id "
                            f"FROM raw WHERE event_ts >= {b.r0} AND event_ts < {b.r1}").to_pylist()
        out: dict[date, set[str]] = defaultdict(set)
        for row in rows:
            out[ms_day(row["day_no"] * DAY_MS)].add(row["anonymous_id"])
        return dict(out)

    # -- writing ---------------------------------------------------------------------------------

    def _view(self, name: str) -> str:
        self._views.append(name)
        return name

    def _write_and_commit(self, b: Bounds, touched: dict[date, set[str]]) -> None:
        job = self.job
        staging = Path(job.ctx.staging)
        events_parts, deleted = [], []
        day_files = defaultdict(list)
        for f in self._day_files(tables.EVENTS, b.r0, b.r1):
            day_files[f.day].append(f)
        for i, (day, who) in enumerate(sorted(touched.items())):
            sql, replaced = self._events_of_day(b, i, day, who, day_files.get(day, []))
            events_parts.append((day, sql))
            deleted += [f.file for f in replaced]
        written = {}
        if events_parts:
            parts = [((job.tenant, day.isoformat()), sql) for day, sql in events_parts]
            written[tables.EVENTS.name] = self.e.write_parquet(
                " UNION ALL ".join(f"SELECT * FROM ({sql}) p{i}" for i, (_, sql) in enumerate(parts)),
                self.store.output_folder(tables.EVENTS, self.e, str(staging / tables.EVENTS.name), job.ctx.run_id),
                ["tenant", "event_date"], job.ctx.convert.target_file_mb,
                parts=parts, bucket="bucket")
        self.store.replace_files(tables.EVENTS, deleted, written.get(tables.EVENTS.name, []), job.ctx.run_id)
        self._replace_days(tables.SESSIONS, b, sorted(touched))
        self._replace_days(tables.PAGEVIEWS, b, sorted(touched))
        self._replace_days(tables.HIGH_LEVEL_EVENTS, b, sorted(touched))

    def _events_of_day(self, b: Bounds, i: int, day: date, who: set[str], files: list[DayFile]) -> tuple[str, list[DayFile]]:
        """The events rows to write for ``day`` (with their ``bucket`` folder) and the files they replace.

        People whose committed rows change (a late event, an identify, a copy that wins the dedupe)
        have their buckets rewritten: the other people's rows of those files are copied, theirs
        recomputed. The new events of everyone else are appended (``bucket=delta``), and no other
        file is touched. A day never converted gets bucket files; a day whose appended files have
        grown gets them folded back into its buckets."""
        lo, hi = day_ms(day), day_ms(day) + DAY_MS
        raw_day = self._view(f"raw_d{i}")  # raw is small here: a table per day, no per-file views
        self.e.materialize(raw_day, f"SELECT * FROM raw WHERE event_ts >= {lo} AND event_ts < {hi}")
        out = bake.events_out_sql(b, self.d, lo, hi, raw_day, self.job.ctx.promoted)
        on_day = f"h.event_date = DATE '{day.isoformat()}'"
        appended = [f for f in files if buckets.of_path(f.uri) == buckets.DELTA]
        ids = {buckets.of_path(f.uri) for f in files} - {buckets.DELTA}
        n = buckets.split_id(ids.pop())[0] if ids else self.job.buckets(day)
        if not files:
            mine = {buckets.bucket_id(p, n) for p in who}
        else:
            changed = self.e.query(merge.changed_people_sql(self.events_schema, self.produced, on_day, out))
            mine = {buckets.bucket_id(p, n) for p in changed.column(0).to_pylist()}
        size = sum(f.file.file_size_in_bytes for f in files)
        if appended and (len(appended) >= MAX_APPENDED_FILES or
                         sum(f.file.file_size_in_bytes for f in appended) >= MAX_APPENDED_SHARE * size):
            mine |= self._buckets_of(appended, n)  # compact: every bucket the appended files hold
        cols = merge.columns(self.events_schema, self.produced, "x")
        if not mine:  # the common case: nothing committed changes, the new events are appended
            return (f"SELECT y.*, '{buckets.DELTA}' AS bucket FROM ("
                    f"{merge.appended_rows_sql(self.events_schema, self.produced, on_day, out, None)}) y"), []
        replaced = [f for f in files if buckets.of_path(f.uri) in mine] + appended
        view = self._view(f"existing_d{i}")
        self.e.read_parquet(view, [self._local(f) for f in replaced], self.events_schema)
        targets = ", ".join(str(k) for k in sorted(mine))
        in_mine = lambda alias: f"{self.d.bucket_id(alias + '.anonymous_id', str(n))} IN ({targets})"  # noqa: E731
        rows = (f"SELECT {merge.columns(self.events_schema, None, 'e')} FROM {view} e "
                f"WHERE NOT ({merge.is_affected('e')} AND {in_mine('e')})"  # their rows are recomputed below
                f" UNION ALL SELECT {cols} FROM ({out}) x WHERE {in_mine('x')}"
                f" UNION ALL {merge.appended_rows_sql(self.events_schema, self.produced, on_day, out, in_mine)}")
        bucket = f"CAST({self.d.bucket_id('z.anonymous_id', str(n))} AS STRING)"
        return (f"SELECT z.*, CASE WHEN {in_mine('z')} THEN {bucket} ELSE '{buckets.DELTA}' END AS bucket "
                f"FROM ({rows}) z"), replaced

    def _replace_days(self, tdef: tables.TableDef, b: Bounds, days: list[date]) -> None:
        """Rewrite the table's files of ``days``: their unaffected rows, and the recomputed ones."""
        if not days:
            return
        files = [f for f in self._day_files(tdef, b.r0, b.r1) if f.day in set(days)]
        schema = self.store.arrow_schema(tdef.name)
        view = self._view(f"existing_{tdef.name}")
        self.e.read_parquet(view, [self._local(f) for f in files], schema)
        day_list = ", ".join(f"DATE '{d.isoformat()}'" for d in days)
        out = {
            tables.SESSIONS.name: bake.sessions_out_sql(b, self.d, b.r0, b.r1),
            tables.PAGEVIEWS.name: bake.pageviews_out_sql(b, self.d, b.r0, b.r1),
            tables.HIGH_LEVEL_EVENTS.name: bake.high_level_out_sql(b, self.d, b.r0, b.r1, "raw"),
        }[tdef.name]
        recomputed = f"SELECT {merge.columns(schema, None, 'x')} FROM ({out}) x WHERE x.{tdef.date_column} IN ({day_list})"
        committed = f"SELECT {merge.columns(schema, None, 'e')} FROM {view} e WHERE {merge.is_affected('e')}"
        if tdef is not tables.SESSIONS and not self._count(  # (a session's end moves with every new event)
                f"SELECT * FROM ({recomputed} EXCEPT {committed}) n UNION ALL SELECT * FROM ({committed} EXCEPT {recomputed}) o",
                wrap=True):
            return  # the affected people's rows come back as they are: nothing to rewrite
        sql = f"{merge.kept_rows_sql(schema, view)} UNION ALL {recomputed}"
        folder = self.store.output_folder(tdef, self.e, str(Path(self.job.ctx.staging) / tdef.name), self.job.ctx.run_id)
        written = self.e.write_parquet(sql, folder, ["tenant", tdef.date_column], self.job.ctx.convert.target_file_mb)
        self.store.replace_files(tdef, [f.file for f in files], written, self.job.ctx.run_id)

    def _buckets_of(self, files: list[DayFile], n: int) -> set[int]:
        self.e.read_parquet("appended_ids", [self._local(f) for f in files], pa.schema([("anonymous_id", pa.string())]))
        ids = self.e.query("SELECT DISTINCT anonymous_id FROM appended_ids").column(0).to_pylist()
        self.e.drop("appended_ids")
        return {buckets.bucket_id(a, n) for a in ids}

    def _count(self, sql: str, wrap: bool = False) -> int:
        q = f"SELECT count(*) AS n FROM ({sql}) q" if wrap else sql
        return int(self.e.query(q).column(0)[0].as_py())

    def _local(self, f: DayFile) -> str:
        """A path the engine can read: the table file itself when local, else a copy in staging."""
        path = local_path(f.uri)
        if path is not None:
            return path
        if self.e.reaches(f.uri):  # Spark with S3A: its executors read the file where it is
            return f.uri
        dest = Path(self.job.ctx.staging) / "tables" / f.uri.split("://", 1)[1]
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp")
            with self.store.table(tables.EVENTS.name).io.new_input(f.uri).open() as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 8 * 1024 * 1024)
            os.replace(tmp, dest)
        return str(dest)
