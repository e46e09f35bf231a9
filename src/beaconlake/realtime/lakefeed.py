"""The lake detector: server-side sequence detection over every node's raw lake files
(``realtime.sequences_from = "lake"``), run by one process of the active jobs node.

Why: a person's events reach any collector node, and each node's deliverer sees only its own
(the ``spool`` detector). Every node delivers to the one raw lake, so one detector reading the
lake sees every event, wherever it arrived.

Order, and what "the same matches" means. Raw files arrive late (each node's delivery interval)
and hold events in no global order, so the detector keeps a **watermark** ``W``: event time
``now - lake_lateness_secs`` on this node's clock. Each step lists the raw files of the days
from the last watermark ``W0`` to the new one ``W`` (through the storage seam, keys parsed by
``lake/layout.py``) and feeds every event with ``W0 < event_ts <= W`` from every file, sorted by
``(event_ts, event_id)``, to a ``Detector`` whose clock is event time (``event_time=True``); then
it emits the matches due at ``W``. So for every event whose file is in the lake before the
watermark passes its time, the matches are exactly those of one detector fed all those events in
one stream in ``(event_ts, event_id)`` order (tests/realtime/test_lakefeed.py states and checks
it). An event whose file arrives after the watermark passed its time is **late**: counted in
``beaconlake_sequences_late_events_total`` and left out of detection (the raw lake and the
tables keep it), as statistics do with their own late events.

Exactly once. The checkpoint (``CHECKPOINT_KEY`` in the coordination store) holds the
watermark, the files seen recently (``LISTING_MARGIN_MS``) or still pending, with the time of
their last event, the detector's state, and the **outbox**: the matches of the step, written
before they are published. Every write is fenced by the lease (``LEASE_NAME``): a former holder's write raises
``LeaseLost``. Publishing writes the matches as one raw file of level ``high`` whose name comes
from the step's watermark (``<W>-detect-lake``: rewritten identically when redone), indexes
them (idempotent on ``event_id``, a uuid5 of definition and events) and counts them in the
statistics, then clears the outbox. A crash before the checkpoint redoes the step from the last
one (same events, same matches); after it, the next holder publishes the outbox again. Only the
statistics can count a match twice (a crash between counting and clearing the outbox), as in
the spool detector.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from beaconlake.backends.coordination import Coordination, Lease, LeaseLost
from beaconlake.backends.counters import Counters
from beaconlake.backends.highlevel import HighLevelIndex
from beaconlake.backends.storage import Storage
from beaconlake.config import Settings
from beaconlake.errors import StorageError
from beaconlake.ingest.rows import segment_rows
from beaconlake.lake import layout
from beaconlake.lake.parquet import file_bytes
from beaconlake.lake.privacy import SuppressionList
from beaconlake.lake.records import ROW_ERRORS, read_record, record_events
from beaconlake.realtime.closer import WindowCloser
from beaconlake.realtime.emit import OWN_MARK, indexed, match_payloads
from beaconlake.realtime.sequences import Detector, Match, Seen
from beaconlake.realtime.stats import Folder
from beaconlake.telemetry import Metrics
from beaconlake.types import LEVELS
from beaconlake.units import day_of

log = logging.getLogger(__name__)

LEASE_NAME = "sequences"
CHECKPOINT_KEY = "realtime/sequences"
CLOSED_KEY = "realtime/closed_windows"
COLUMNS = ["event_id", "level", "name", "anonymous_id", "user_id", "session_id", "event_ts", "url", "title",
           "referrer", "props"]
# At most this much event time per step: after a long stop the detector catches up in steps whose
# files fit in memory, rather than reading days of files in one
MAX_STEP_MS = 3_600_000
# A done file leaves the checkpoint once files written this much later have been seen; a file
# that is not in the checkpoint and was written this long before the newest seen is taken as
# done. So the checkpoint holds minutes of files, not a day's; a raw file must become visible
# within this of its modification time (a put takes seconds).
LISTING_MARGIN_MS = 600_000
RENEW_SECS = 2.0  # how often a long step renews its lease (well inside coordination.lease_secs)
NONE = -1  # a file's last event time when no event of it concerns any definition
_props = msgspec.json.Decoder()


class Checkpoint(msgspec.Struct):
    watermark_ms: int
    # raw key -> event_ts of its last event a definition reads (NONE: none), for the files written
    # in the last LISTING_MARGIN_MS and those still pending: a file not here (and written after
    # that) is new, and its events at or below the watermark are late
    files: dict[str, int] = {}
    detector: bytes = b""  # Detector.dump()
    outbox: list[dict] = []  # matches (Match fields) decided, not yet published
    outbox_at_ms: int = 0  # their received_at (the file's name is the watermark's): the same bytes again
    listed_mtime_ms: int = 0  # the newest modification time of a raw file seen (the storage's clock)


@dataclass
class StepResult:
    watermark_ms: int
    fed: int = 0  # events fed to the detector
    late: int = 0  # events of new files at or below the last watermark: left out
    files_read: int = 0
    matches: list[Match] = dataclasses.field(default_factory=list)


@dataclass(order=True, slots=True)
class _Event:
    ts: int
    event_id: str
    tenant: str = dataclasses.field(compare=False)
    seen: Seen = dataclasses.field(compare=False)


def _day(ms: int) -> date:
    return date(*day_of(ms))


def match_stem(watermark_ms: int) -> str:
    """The segment name of the raw file holding a step's matches."""
    return f"{watermark_ms:013d}{OWN_MARK}lake"


class CoordinationMarker:
    """The window closer's marker in the coordination store, written fenced."""

    def __init__(self, coordination: Coordination, lease: Lease) -> None:
        self.coordination, self.lease = coordination, lease

    def load(self) -> int | None:
        value = self.coordination.get(CLOSED_KEY)
        return int(value["until"]) if isinstance(value, dict) and isinstance(value.get("until"), int) else None

    def save(self, until: int) -> None:
        self.coordination.put(CLOSED_KEY, {"until": until}, lease=self.lease)


class LakeDetector:
    """One detector over the raw lake; ``step`` is one pass. Hold ``lease`` (``LEASE_NAME``) while
    using it; an instance whose step raised must be dropped (its memory is ahead of its checkpoint)."""

    def __init__(self, settings: Settings, storage: Storage, coordination: Coordination, lease: Lease,
                 index: HighLevelIndex, counters: Counters | None = None, metrics: Metrics | None = None,
                 clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        rt = settings.realtime
        self.storage, self.coordination, self.lease, self.index = storage, coordination, lease, index
        self.counters = counters
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.lateness_ms = int(rt.lake_lateness_secs * 1000)
        self.zstd_level = settings.delivery.zstd_level
        self.retention_ms = rt.retention_hours * 3_600_000
        self.detector = Detector(settings.tenants, int(rt.browser_grace_secs * 1000), rt.max_events_per_person,
                                 event_time=True)
        self.wanted = {t: pa.array(sorted(names), pa.string()) for t, names in self.detector.names_by_tenant().items()}
        self.folder = Folder(rt)
        self.closer = None
        if counters is not None:
            caps = counters.capabilities
            margin = int(2 * caps.flush_interval_secs * 1000) + 1000 if caps.per_process_partials else 0
            self.closer = WindowCloser(counters, storage, None, int(rt.allowed_lateness_secs * 1000), margin,
                                       self.retention_ms, marker=CoordinationMarker(coordination, lease))
        self._cache: dict[str, list[_Event]] = {}  # events of files still pending (memory only)
        self._renewed = time.monotonic()
        privacy = settings.privacy
        # erasures: a forgotten person's held events go, and their events in files not yet
        # rewritten by the erasure job are not read (as the deliverer's consumer does)
        self.suppression = SuppressionList(storage, None, privacy.id_salt or None, privacy.suppression_refresh_secs)
        self._suppressed: dict[str, set[str]] = {}
        saved = coordination.get(CHECKPOINT_KEY)
        if saved is None:
            # a fresh start (or a switch from "spool"): detection begins one longest window back
            # (at most MAX_STEP_MS), so sequences in progress are found; older events are history, not late
            longest = min(MAX_STEP_MS, max((r.window_ms for r in self.detector.rules.values()), default=0))
            self.ckpt = Checkpoint(watermark_ms=clock() - self.lateness_ms - longest)
            self._fresh = True
        else:
            self.ckpt = msgspec.convert(saved, Checkpoint)
            if self.ckpt.detector:
                self.detector.load(self.ckpt.detector)
            self._fresh = False

    # -- one pass ------------------------------------------------------------------------

    def step(self, now_ms: int | None = None) -> StepResult:
        """Feed the events the watermark passed since the last step, checkpoint, publish the
        matches due. Raises LeaseLost (stop: another node has the lease) or StorageError."""
        if self.ckpt.outbox:
            self._publish()  # a crash, or a former holder, left matches decided and not published
        self._forget_suppressed()
        now = self.clock() if now_ms is None else now_ms
        ckpt = self.ckpt
        start = ckpt.watermark_ms
        end = max(start, min(now - self.lateness_ms, start + MAX_STEP_MS))
        out = StepResult(end)
        listed = self._list(start, end)
        # files written this long before the newest one seen were seen and forgotten (pruned below)
        horizon = ckpt.listed_mtime_ms - LISTING_MARGIN_MS
        released: list[_Event] = []
        for key, mtime in listed.items():
            known = key in ckpt.files
            if (known and ckpt.files[key] <= start) or (not known and mtime < horizon):
                continue  # every event of it is fed already
            self._keep_lease()
            events = self._events(key)
            if events is None:
                ckpt.files.pop(key, None)
                continue
            out.files_read += 1
            if not known:
                ckpt.files[key] = events[-1].ts if events else NONE
                if not self._fresh:
                    out.late += sum(1 for e in events if e.ts <= start)
            released.extend(e for e in events if start < e.ts <= end)
        released.sort()
        for e in released:
            self.detector.feed(e.tenant, e.seen, e.ts)
        out.fed = len(released)
        out.matches = self.detector.due(end)
        self.detector.expire(end)
        first_listed = _day(end)
        ckpt.listed_mtime_ms = max([ckpt.listed_mtime_ms, *listed.values()])
        recent = ckpt.listed_mtime_ms - LISTING_MARGIN_MS
        # the next step lists from day(end): older days' entries can go; so can files done (the
        # watermark passed their last event) and written long enough ago; and cached files done
        ckpt.files = {k: ts for k, ts in ckpt.files.items()
                      if _day_of_key(k) >= first_listed and (ts > end or listed.get(k, -1) >= recent)}
        self._cache = {k: v for k, v in self._cache.items() if ckpt.files.get(k, NONE) > end}
        ckpt.watermark_ms = end
        ckpt.detector = self.detector.dump()
        ckpt.outbox = [dataclasses.asdict(m) for m in out.matches]
        ckpt.outbox_at_ms = now
        self._save()
        self._fresh = False
        self.metrics.inc("beaconlake_sequences_late_events_total", out.late)
        self.metrics.inc("beaconlake_sequences_lake_files_read_total", out.files_read)
        self.metrics.set("beaconlake_sequences_watermark_lag_seconds", max(0, now - end) / 1000)
        if ckpt.outbox:
            self._publish()
        if self.closer is not None:
            self.counters.prune(now - self.retention_ms)
            rows = self.closer.run(now)
            self.counters.flush()
            if rows:
                self.metrics.inc("beaconlake_stats_windows_written_total", rows)
        return out

    def _keep_lease(self) -> None:
        """Renew the lease during a long step (catching up reads many files): a step longer than
        the lease would otherwise lose it at its checkpoint, every time."""
        if time.monotonic() - self._renewed < RENEW_SECS:
            return
        if not self.lease.renew():
            raise LeaseLost(f"lease {LEASE_NAME!r} passed on during a step")
        self._renewed = time.monotonic()

    def _list(self, start: int, end: int) -> dict[str, int]:
        """Raw keys (and their modification times) of the tenants with sequences, days
        day(start)..day(end), but no match file."""
        keys = {}
        day, last = _day(start), _day(end)
        while day <= last:
            for tenant in sorted(self.detector.rules):
                for level in LEVELS:
                    for info in self.storage.list_info(layout.raw_prefix(tenant, level, day)):
                        parsed = layout.parse_raw(info.key)
                        if parsed is not None and OWN_MARK not in parsed.segment:
                            keys[info.key] = info.mtime_ms
            day += timedelta(days=1)
        return keys

    def _events(self, key: str) -> list[_Event] | None:
        """The file's events a definition reads (or high-level ones: the browser's reports), in
        order; None when it is gone (retention) or unreadable (convert quarantines it)."""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        parsed = layout.parse_raw(key)
        tenant = parsed.tenant
        try:
            with self.storage.open_input(key) as f:
                table = pq.read_table(f, columns=COLUMNS)
        except StorageError as exc:
            log.warning("sequences: cannot read %s (%s); its events are left out", key, exc)
            return None
        except (OSError, pa.ArrowException) as exc:
            log.error("sequences: %s is no readable raw file (%s); its events are left out", key, exc)
            return None
        keep = pc.or_(pc.is_in(table["name"], value_set=self.wanted[tenant]), pc.equal(table["level"], "high"))
        events = []
        forgotten = self._forgotten(tenant)
        for row in table.filter(keep).to_pylist():
            if forgotten is not None and forgotten(row["anonymous_id"], row["user_id"]):
                continue
            try:
                props = None if row["props"] is None else _props.decode(row["props"])
            except ROW_ERRORS:
                continue  # as the spool detector: realtime needs props decoded
            ts = row["event_ts"]
            events.append(_Event(ts, row["event_id"], tenant, Seen(
                row["event_id"], row["level"], row["name"], row["anonymous_id"], row["user_id"], row["session_id"],
                ts, row["url"], row["title"], row["referrer"], props)))
        events.sort()
        self._cache[key] = events
        return events

    def _forget_suppressed(self) -> None:
        """When the suppression list changed: drop the state of the people it names, and the
        cached events (re-read without theirs). The checkpoint of this step keeps them out."""
        hashes = self.suppression.refresh()
        if hashes == self._suppressed:
            return
        self._suppressed = hashes
        self._cache.clear()
        hasher = self.suppression.hasher
        for tenant, mine in hashes.items():
            self.detector.forget(tenant, lambda person_id, mine=mine: hasher(person_id) in mine)

    def _forgotten(self, tenant: str) -> Callable[[str, str | None], bool] | None:
        mine = self._suppressed.get(tenant)
        if not mine:
            return None
        hasher = self.suppression.hasher
        return lambda anon, user: hasher(anon) in mine or (user is not None and hasher(user) in mine)

    # -- checkpoint and publishing ---------------------------------------------------------

    def _save(self) -> None:
        self.coordination.put(CHECKPOINT_KEY, msgspec.to_builtins(self.ckpt), lease=self.lease)

    def _publish(self) -> None:
        """Write the outbox's matches to the lake, the index and the statistics; then clear it."""
        ckpt = self.ckpt
        matches = [Match(**m) for m in ckpt.outbox]
        stem = match_stem(ckpt.watermark_ms)
        highs, by_tenant = [], {}
        for rec_no, payload in enumerate(match_payloads(matches, ckpt.outbox_at_ms)):
            rec = read_record(payload)
            events, _ = record_events(rec, stem, rec_no)
            by_tenant[rec.tenant] = events
            highs.extend(indexed(rec.tenant, ev, _props.decode(ev.props)) for ev in events)
        raw, _ = segment_rows(stem, match_payloads(matches, ckpt.outbox_at_ms), ckpt.outbox_at_ms).tables()
        for (tenant, level, y, m, d), table in sorted(raw.items()):
            self.lease.check()
            # rows and Parquet options exactly as lake delivery writes a segment's files
            self.storage.put(layout.raw_key(tenant, level, date(y, m, d), stem), file_bytes(table, self.zstd_level))
        self.lease.check()
        self.index.add(highs)
        if self.counters is not None:
            now = self.clock()
            for tenant, events in by_tenant.items():
                late = self.counters.fold(self.folder, tenant, [(ev, ev.event_ts) for ev in events], now)
                self.metrics.inc("beaconlake_stats_events_total", len(events) - late)
                self.metrics.inc("beaconlake_stats_late_events_total", late)
        self.metrics.inc("beaconlake_sequences_matched_total", len(matches))
        self.metrics.inc("beaconlake_highlevel_indexed_total", len(highs))
        ckpt.outbox = []
        self._save()


def _day_of_key(key: str) -> date:
    parsed = layout.parse_raw(key)
    return parsed.day if parsed else date.min


__all__ = ["CHECKPOINT_KEY", "CLOSED_KEY", "LEASE_NAME", "Checkpoint", "LakeDetector", "StepResult"]

