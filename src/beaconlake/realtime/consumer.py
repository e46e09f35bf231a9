"""The realtime consumer: runs in the lake deliverer, over every sealed spool segment.

Why here: sequence detection needs each person's events in one place, and with N collector
workers a person's events land on any of them. The deliverer is the one process that reads
every segment, so it feeds the detector (in event-time order), indexes the high-level
events (the browser's and its own), and writes closed statistics windows to the lake. It
runs before a segment's lake delivery, and records which segments it has fed in the same
checkpoint as the detector's state, so a segment redelivered after a crash is not fed twice.

With ``realtime.sequences_from = "lake"`` it only indexes (the browsers' reports, identity
links): detection and closing windows move to the lake detector (``lakefeed``), which sees every
node's events.

It is one of the deliverer's pre-delivery consumers (``ingest.deliver.PreDelivery``): the
composition root (``beaconlake.up``) builds it and hands it to delivery, which never imports it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec

from beaconlake.backends.counters import open_counters
from beaconlake.backends.highlevel import open_highlevel
from beaconlake.backends.storage import Storage
from beaconlake.config import Settings
from beaconlake.errors import SpoolCorrupt, StorageError
from beaconlake.lake.privacy import SuppressionList
from beaconlake.lake.records import ROW_ERRORS, LakeEvent
from beaconlake.realtime.checkpoint import Checkpoint
from beaconlake.realtime.closer import WindowCloser
from beaconlake.realtime.emit import indexed, is_own, write_segment
from beaconlake.realtime.feed import segment_events
from beaconlake.realtime.sequences import Detector, Seen
from beaconlake.realtime.stats import Folder
from beaconlake.telemetry import Metrics

log = logging.getLogger(__name__)
_props = msgspec.json.Decoder()
MAX_KNOWN_IDENTITIES = 100_000


class RealtimeConsumer:
    name = "realtime"
    failures_metric = "beaconlake_realtime_failures_total"  # a call that raised; lake delivery goes on

    def __init__(self, settings: Settings, storage: Storage, metrics: Metrics) -> None:
        rt = settings.realtime
        self.settings = settings
        self.metrics = metrics
        self.spool_root = settings.spool_path
        self.saved = Checkpoint(settings.realtime_path)
        # "lake": the active jobs node's lake detector (lakefeed) detects and closes windows; here
        # high-level events (browser reports) and identities are still indexed
        self.detects = rt.sequences_from == "spool"
        self.detector = Detector(settings.tenants if self.detects else [], int(rt.browser_grace_secs * 1000),
                                 rt.max_events_per_person)
        self.saved.load(self.detector)
        self.retention_ms = rt.retention_hours * 3_600_000
        self.counters = open_counters(settings.counters, role="deliver", state_dir=settings.realtime_path,
                                      retention_ms=self.retention_ms)
        self.index = open_highlevel(settings.highlevel)
        self.folder = Folder(rt)
        # a window closes once every process's partials of it are published (twice their interval, and a second)
        caps = self.counters.capabilities
        margin = int(2 * caps.flush_interval_secs * 1000) + 1000 if caps.per_process_partials else 0
        self.closer = WindowCloser(self.counters, storage, settings.realtime_path / "closed.json",
                                   int(rt.allowed_lateness_secs * 1000), margin, self.retention_ms)
        self._known: set[tuple[str, str, str]] = set()
        self._last_close = 0.0
        privacy = settings.privacy
        self.suppression = SuppressionList(storage, None, privacy.id_salt or None, privacy.suppression_refresh_secs)
        self._suppressed: dict[str, set[str]] = {}

    def process(self, segments: list[Path],
                events: Callable[[Path], Iterable[tuple[str, LakeEvent]]] = segment_events) -> None:
        """Feed the segments not fed yet, then checkpoint; call before delivering them. ``events``
        reads a segment's events (the deliverer passes its own decode, which delivery reuses)."""
        done = set(self.detector.state.processed)
        todo = [p for p in segments if p.name not in done]
        now = time.time_ns() // 1_000_000
        wanted = self.detector.names_by_tenant()
        # one look at every event; only those a definition mentions (or the browser's high-level
        # reports) go on to be sorted and fed: most events are neither
        fed: list[tuple[str, LakeEvent]] = []
        idents, own = set(), {}
        for path in todo:
            own_seg = is_own(path)
            try:
                for tenant, ev in events(path):
                    if own_seg:
                        own.setdefault(tenant, []).append((ev, ev.event_ts))
                    if ev.user_id and (tenant, ev.anonymous_id, ev.user_id) not in self._known:
                        idents.add((tenant, ev.anonymous_id, ev.user_id))
                    if ev.level == "high" or ev.name in wanted.get(tenant, ()):
                        fed.append((tenant, ev))
            except (SpoolCorrupt, OSError) as exc:  # lake delivery parks it; go on
                log.error("realtime: cannot read %s: %s", path.name, exc)
        fed.sort(key=lambda x: x[1].event_ts)  # stable, so per-segment order holds within a ms
        highs = []
        for tenant, ev in fed:
            try:
                props = None if ev.props is None else _props.decode(ev.props)
            except ROW_ERRORS:  # props are JSON text the lake keeps as it is; realtime needs them decoded
                continue
            ts = ev.event_ts
            self.detector.feed(tenant, Seen(ev.event_id, ev.level, ev.name, ev.anonymous_id, ev.user_id, ev.session_id,
                                            ts, ev.url, ev.title, ev.referrer, props), now)
            if ev.level == "high":
                highs.append(indexed(tenant, ev, props))
        if highs or idents:
            self.index.add(highs, sorted(idents))
            if len(self._known) > MAX_KNOWN_IDENTITIES:
                self._known.clear()
            self._known |= idents
            self.metrics.inc("beaconlake_highlevel_indexed_total", len(highs))
        for tenant, pairs in own.items():
            pairs.sort(key=lambda x: x[1])
            # server matches never passed a collector's router: count them here
            late = self.counters.fold(self.folder, tenant, pairs, now)
            self.metrics.inc("beaconlake_stats_events_total", len(pairs) - late)
        live = {p.name for p in segments}
        self.detector.state.processed = sorted((done & live) | {p.name for p in todo})
        self.tick(now, force_checkpoint=bool(todo))

    def tick(self, now_ms: int | None = None, force_checkpoint: bool = False) -> None:
        """Emit matches whose wait is over, forget expired state, close windows."""
        now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        forgot = self._forget_suppressed()
        matches = self.detector.due(now_ms)
        if matches:
            write_segment(self.spool_root, matches)
            self.metrics.inc("beaconlake_sequences_matched_total", len(matches))
        self.detector.expire(now_ms)
        if matches or force_checkpoint or forgot:
            self.checkpoint()
        self.counters.flush()
        if self.detects and time.monotonic() - self._last_close >= 5.0:
            self._last_close = time.monotonic()
            self.counters.prune(now_ms - self.retention_ms)
            rows = self.closer.run(now_ms)
            if rows:
                self.metrics.inc("beaconlake_stats_windows_written_total", rows)

    def _forget_suppressed(self) -> int:
        """Drop the detector state of people an erasure names (the suppression list), whenever the
        list changes: an erasure carried out while this process runs must not be undone by its
        next checkpoint."""
        try:
            hashes = self.suppression.refresh()
        except (StorageError, OSError, msgspec.DecodeError) as exc:  # the lake is down: detection goes on
            log.warning("realtime: cannot read the suppression list again (%s)", exc)
            return 0
        if hashes == self._suppressed:
            return 0
        self._suppressed = hashes
        hasher = self.suppression.hasher
        return sum(self.detector.forget(tenant, lambda i, mine=mine: hasher(i) in mine) for tenant, mine in hashes.items())

    def checkpoint(self) -> None:
        self.saved.save(self.detector)

    def close(self) -> None:
        self.checkpoint()
        self.counters.close()
        self.index.close()


def forget_in_checkpoint(settings: Settings, tenant: str, ids: set[str]) -> int:
    """Drop the people ``ids`` name from the detector's checkpoint on disk (an erasure while the
    deliverer is stopped; a running one drops them itself through the suppression list)."""
    rt = settings.realtime
    detector = Detector(settings.tenants, int(rt.browser_grace_secs * 1000), rt.max_events_per_person)
    saved = Checkpoint(settings.realtime_path)
    if not saved.load(detector):
        return 0
    gone = detector.forget(tenant, ids.__contains__)
    if gone:
        saved.save(detector, whole=True)
    return gone
