"""Lake delivery: sealed spool segments become zstd Parquet files in the raw lake.

Each segment is split by (tenant, level, UTC day of ``event_ts``) and written to the keys
``lake/layout.py`` builds::

    raw/tenant=T/level=L/year=YYYY/month=MM/day=DD/<segment>.parquet
    rejected/tenant=T/year=YYYY/month=MM/day=DD/<segment>.parquet

What delivery promises for every acknowledged event:

* **Exactly once in the lake, at least once delivered.** File names come from the segment's
  name, so delivering a segment twice (a crash between writing its files and deleting it)
  rewrites the same files. A segment is deleted only after every one of its files is durable.
* **One bad thing never stops the rest.** A record or event that cannot become a row goes to
  ``rejected`` with reason ``undeliverable`` (``rows.py``, ``lake/records.py``); the rest of its segment is
  delivered. Any other failure of one segment is counted, retried with backoff while the other
  segments go on, and parked after ``PARK_AFTER_ATTEMPTS`` (an outage of the lake storage, or
  of the machine: full disk, no descriptors, is retried for ever, never parked).
* **Nothing deleted that was not delivered.** A damaged segment (``lake/segment.py``) has what can
  be read delivered, then is parked in ``spool/corrupt/`` beside a JSON report of what could
  not be read; so is one that keeps failing, with its error.
* **A stuck pipeline shows.** ``beaconlake_delivery_lag_seconds`` is the age of the oldest
  undelivered segment, open or sealed; the segments of dead writers are sealed on every pass.

What must see a segment before delivery deletes it (the realtime stage's sequence detection and
high-level indexing) is handed in as ``PreDelivery`` consumers by whoever composes the process
(``beaconlake.up``): delivery knows the protocol, never the stages behind it, and a consumer's
failure is counted and logged, never a reason to hold back the lake.
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol

import msgspec
import pyarrow as pa

from beaconlake.backends.storage import Storage, open_storage
from beaconlake.config import Settings
from beaconlake.errors import SpoolCorrupt, StorageError
from beaconlake.files import fsync_dir, replace_file
from beaconlake.ingest import spool
from beaconlake.ingest.forget import scrub_spool
from beaconlake.ingest.rows import SegmentRows, segment_rows
from beaconlake.lake import layout, segment
from beaconlake.lake.parquet import file_bytes
from beaconlake.lake.records import LakeEvent
from beaconlake.lake.privacy import SuppressionList
from beaconlake.telemetry import Metrics

__all__ = ["Deliverer", "PreDelivery", "run_forever"]

log = logging.getLogger(__name__)

PARK_AFTER_ATTEMPTS = 5
# Counters reach /metrics through a snapshot: written after every pass, and at least this often
# during a long one (an outage makes each segment's attempt wait for the storage's timeouts).
PUBLISH_SECS = 1.0
# A pass over a backlog (after an outage) keeps at most this much of its segments decoded between
# the consumers' read and their delivery; the rest are decoded again when delivered.
MAX_DECODED_BYTES = 256 * 1024 * 1024
# Failures of the machine rather than of one segment: retried for ever, never a reason to park.
MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN})


class PreDelivery(Protocol):
    """Something that must see every sealed segment before lake delivery deletes it.

    ``process`` gets a pass's sealed segments (oldest first) before any of them is delivered,
    and ``events``, which gives a segment's (tenant, event) pairs from the decode its delivery
    then uses (raising SpoolCorrupt or OSError as ``segment.read_frames`` does): a segment is
    decoded once per pass, not once per reader. A segment redelivered after a crash comes
    again, so a consumer remembers what it has seen.
    ``tick`` is a pass with nothing sealed: time-driven work (matches whose wait is over, windows
    to close). ``close`` at the end of the process, after the last pass. A call that raises is
    logged and counted in ``failures_metric`` (a counter in ``telemetry.HELP``); delivery goes on.
    """

    name: str
    failures_metric: str

    def process(self, segments: list[Path], events: Callable[[Path], Iterable[tuple[str, LakeEvent]]]) -> None: ...

    def tick(self) -> None: ...

    def close(self) -> None: ...


class StorageOutage(Exception):
    """The lake storage refused a write: retried for ever, the segment stays where it is."""


@dataclass
class Delivery:
    events: int = 0
    rejections: int = 0
    undeliverable: int = 0  # accepted events (or records) that went to rejected instead of raw
    parked: bool = False
    unreadable_bytes: int = 0


def _readable(path: Path) -> bool:
    """Whether a segment the scrub left alone reads whole (so its rewrite failed: it waits for the
    next pass). One that is damaged or cannot be read goes on to delivery, which parks it."""
    try:
        scan = segment.read(path)
    except OSError:
        return False
    return not (scan.corrupt or scan.version is None)


def _machine_trouble(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in MACHINE_ERRNOS


class Deliverer:
    def __init__(self, settings: Settings, storage: Storage | None = None, metrics: Metrics | None = None,
                 consumers: Sequence[PreDelivery] = ()) -> None:
        self.settings = settings
        self.root = settings.spool_path
        self.storage = storage or open_storage(settings.storage)
        self.metrics = metrics or Metrics(settings.run_path, role="deliver")
        self.corrupt_dir = self.root / spool.CORRUPT
        self._failures: dict[str, tuple[int, float]] = {}  # segment -> (attempts, next try)
        self.parked: list[Path] = []  # parked by this deliverer
        self._published = 0.0  # when the metrics snapshot was last written (monotonic)
        self.consumers = list(consumers)
        # segment name -> its scan and rows, decoded for the consumers and kept for its delivery
        # in the same pass (cleared at the pass's end: a retry reads the file again)
        self._decoded: dict[str, tuple[segment.Scan, SegmentRows | None]] = {}
        self._decoded_bytes = 0
        privacy = settings.privacy
        self.suppression = SuppressionList(self.storage, None, privacy.id_salt or None,
                                           privacy.suppression_refresh_secs)

    # -- one segment ---------------------------------------------------------------------

    def deliver_segment(self, path: Path) -> Delivery:
        """Write one segment's files, then delete it (or park it, when damaged). Raises
        StorageOutage when the lake refuses a write, OSError when the spool cannot be read."""
        scan, rows = self._decoded.pop(path.name, None) or self._decode(path)
        if scan.holds_no_frame:
            path.unlink()  # holds no frame, so nothing acknowledged: quietly gone
            return Delivery()
        if rows is None:
            self._park(path, "corrupt", scan.problems[0], scan)
            return Delivery(parked=True, unreadable_bytes=scan.unreadable_bytes)
        raw, rejected = rows.tables()
        level = self.settings.delivery.zstd_level
        out = Delivery(undeliverable=rows.undeliverable, unreadable_bytes=scan.unreadable_bytes)
        for (tenant, lvl, y, m, d), table in sorted(raw.items()):
            self._put(layout.raw_key(tenant, lvl, date(y, m, d), path.stem), file_bytes(table, level))
            out.events += table.num_rows
        for (tenant, y, m, d), table in sorted(rejected.items()):
            self._put(layout.rejected_key(tenant, date(y, m, d), path.stem), file_bytes(table, level))
            out.rejections += table.num_rows
        if rows.undeliverable:
            log.warning("%s: %d record(s) or event(s) could not become lake rows; kept in lake/rejected as %r",
                        path.name, rows.undeliverable, "undeliverable")
        if scan.corrupt:
            self._park(path, "corrupt", "; ".join(scan.problems), scan, out)
            out.parked = True
        else:
            if scan.torn_tail:
                log.info("%s: %d bytes of a torn last write ignored (its writer died; never acknowledged)",
                         path.name, scan.torn_tail[1] - scan.torn_tail[0])
            path.unlink()
            fsync_dir(path.parent)
        return out

    def _decode(self, path: Path) -> tuple[segment.Scan, SegmentRows | None]:
        """The segment's scan and, when it is a readable segment, its rows. Raises OSError."""
        scan = segment.read(path)
        if scan.holds_no_frame or scan.version is None:
            return scan, None
        return scan, segment_rows(path.stem, scan.frames, spool.created_ms(path) or int(path.stat().st_mtime * 1000))

    def events_of(self, path: Path) -> Iterable[tuple[str, LakeEvent]]:
        """A segment's events for the consumers, decoded once: its delivery later in the pass
        takes the same decode."""
        got = self._decoded.get(path.name)
        if got is None:
            got = self._decode(path)
            if self._decoded_bytes + got[0].size <= MAX_DECODED_BYTES:
                self._decoded[path.name] = got
                self._decoded_bytes += got[0].size
        scan, rows = got
        if rows is None:
            if scan.holds_no_frame:
                return ()
            raise SpoolCorrupt(f"{path}: {scan.problems[0]}")
        return rows.events()

    def _put(self, key: str, data: bytes) -> None:
        try:
            self.storage.put(key, data)
        except (StorageError, OSError) as exc:
            raise StorageOutage(f"the lake storage refused {key}: {exc}") from exc

    def _park(self, path: Path, reason: str, error: str, scan: segment.Scan | None = None,
              delivered: Delivery | None = None, attempts: int | None = None) -> None:
        """Move a segment to spool/corrupt/ beside a report: never delete what was not delivered."""
        self.corrupt_dir.mkdir(exist_ok=True)
        report = {
            "segment": path.name, "reason": reason, "error": error,
            "parked_at": datetime.now(UTC).isoformat(timespec="seconds"), "attempts": attempts,
            "events_delivered": delivered.events if delivered else 0,
            "rejections_delivered": delivered.rejections if delivered else 0,
            **(scan.report() if scan else {}),
        }
        report_path = self.corrupt_dir / f"{path.stem}.json"
        replace_file(report_path, json.dumps(report, indent=2).encode(), report_path.with_suffix(".json.tmp"))
        os.replace(path, self.corrupt_dir / path.name)
        fsync_dir(self.corrupt_dir)
        fsync_dir(path.parent)
        self.parked.append(self.corrupt_dir / path.name)
        self.metrics.inc("beaconlake_segments_parked_total", reason=reason)
        if scan is not None:
            self.metrics.inc("beaconlake_spool_unreadable_bytes_total", scan.unreadable_bytes)
        log.error("segment %s parked in %s (%s): %s; %d event(s) delivered from it; report %s", path.name,
                  self.corrupt_dir, reason, error, report["events_delivered"], report_path.name)

    # -- the loop ------------------------------------------------------------------------

    def run_once(self) -> int:
        """Seal orphans, then deliver every sealed segment that is due; return how many were
        delivered. One segment's failure never stops the others."""
        done = 0
        # A pass holds its segments' events decoded (a tuple and a few strings each, hundreds of
        # thousands of them) until it ends, and nothing in them can form a cycle: they die by
        # reference count. Python's collector would traverse them again and again as they pile
        # up (its full collections took 40 % of the deliverer's CPU under bench/ingest's load),
        # so it waits for the pass to end (docs/performance.md, "Delivery").
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._seal_orphans()
            segments = spool.sealed_segments(self.root)
            if segments:
                held = self._suppress()
                segments = [p for p in segments if p.name not in held]
            for consumer in self.consumers:  # before delivery deletes them
                if segments:
                    self._guarded(consumer, consumer.process, segments, self.events_of)
                else:
                    self._guarded(consumer, consumer.tick)
            now = time.monotonic()
            for path in segments:
                attempts, next_try = self._failures.get(path.name, (0, 0.0))
                if next_try <= now and self._attempt(path, attempts):
                    done += 1
                if time.monotonic() - self._published >= PUBLISH_SECS:
                    self._publish()  # a pass through many failing segments takes a while
        finally:
            self._decoded.clear()
            self._decoded_bytes = 0
            if collecting:
                gc.enable()
            self._publish()
        return done

    def _suppress(self) -> set[str]:
        """Take the events of forgotten people (the suppression list, ``lake/privacy.py``) out of
        the sealed segments before anything reads them: neither the lake nor the realtime
        consumers ever see them. When the list cannot be read again (the storage is down, and so
        is delivery, most likely), the last one read is used and the next pass tries again.
        Returns the names of the segments that could not be scrubbed now and are not damaged:
        they wait for the next pass (a damaged one goes on to delivery, which parks it)."""
        try:
            hashes = self.suppression.refresh()
        except (StorageError, OSError, msgspec.DecodeError) as exc:
            log.error("cannot read the suppression list again (%s); the last one read is used", exc)
            hashes = self.suppression.hashes
        if not hashes:
            return set()
        cache: dict[str, bool] = {}
        hasher = self.suppression.hasher

        def forgotten(tenant: str, *ids: str | None) -> bool:
            mine = hashes.get(tenant, ())
            for person_id in ids:
                if person_id is None:
                    continue
                if person_id not in cache:
                    cache[person_id] = hasher(person_id) in mine
                if cache[person_id]:
                    return True
            return False

        removed, left = scrub_spool(self.root, set(hashes), lambda t, a, u: forgotten(t, a, u))
        if removed:
            log.info("suppression list: %d event(s) of forgotten people dropped before delivery", removed)
            self.metrics.inc("beaconlake_events_suppressed_total", removed)
        return {name for name in left if _readable(self.root / spool.SEALED / name)}

    def _guarded(self, consumer: PreDelivery, call: Callable[..., None], *args: object) -> None:
        try:
            call(*args)
        except Exception:  # a consumer is best-effort; lake delivery must go on
            self.metrics.inc(consumer.failures_metric)
            log.exception("%s: %s failed; lake delivery continues", consumer.name, call.__name__)

    def _attempt(self, path: Path, attempts: int) -> bool:
        try:
            result = self.deliver_segment(path)
        except FileNotFoundError:
            self._failures.pop(path.name, None)  # gone meanwhile (delivered by an earlier pass)
            return False
        except Exception as exc:  # one segment's failure, whatever it is, must not stop the others
            self._failed(path, attempts + 1, exc)
            return False
        self._failures.pop(path.name, None)
        self.metrics.inc("beaconlake_events_delivered_total", result.events)
        self.metrics.inc("beaconlake_rejections_delivered_total", result.rejections)
        self.metrics.inc("beaconlake_events_undeliverable_total", result.undeliverable)
        if not result.parked:
            self.metrics.inc("beaconlake_segments_delivered_total")
        return True

    def _failed(self, path: Path, attempts: int, exc: Exception) -> None:
        self.metrics.inc("beaconlake_delivery_failures_total")
        outage = isinstance(exc, StorageOutage) or _machine_trouble(exc)
        if not outage and attempts >= PARK_AFTER_ATTEMPTS:
            log.error("delivery of %s failed %d times; parking it", path.name, attempts, exc_info=exc)
            try:
                self._park(path, "failing", f"{type(exc).__name__}: {exc}", attempts=attempts)
                self._failures.pop(path.name, None)
                return
            except OSError as park_exc:
                log.error("cannot park %s (%s); retrying it", path.name, park_exc)
        delay = min(self.settings.delivery.max_retry_secs, 0.5 * 2 ** min(attempts, 30))
        self._failures[path.name] = (attempts, time.monotonic() + delay)
        if outage:
            log.error("delivery of %s failed (attempt %d, next in %.1fs, retried until it works): %s",
                      path.name, attempts, delay, exc)
        else:
            log.error("delivery of %s failed (attempt %d of %d, next in %.1fs)", path.name, attempts,
                      PARK_AFTER_ATTEMPTS, delay, exc_info=exc)

    def _seal_orphans(self) -> None:
        try:
            sealed = spool.seal_orphans(self.root)
        except OSError as exc:
            log.error("cannot seal the segments of dead writers: %s", exc)
            return
        if sealed:
            self.metrics.inc("beaconlake_spool_orphans_sealed_total", len(sealed))

    def _publish(self) -> None:
        try:
            for name, value in spool.spool_gauges(self.root, time.time()).items():
                self.metrics.set(name, value)
            self.metrics.write_snapshot()
            self._published = time.monotonic()
        except OSError as exc:  # a full disk must not stop delivery, which is what frees it
            log.warning("cannot publish delivery metrics: %s", exc)

    def drain(self) -> None:
        """Deliver everything there is now (orphans included), retrying failures until they
        succeed, are parked, or time runs out."""
        deadline = time.monotonic() + self.settings.delivery.drain_timeout_secs
        self.run_once()
        while spool.sealed_segments(self.root) and time.monotonic() < deadline:
            if not self.run_once():
                time.sleep(self.settings.delivery.poll_interval_secs)

    def close(self) -> None:
        """Close the consumers (each one's failure logged and counted; the others still close)."""
        for consumer in self.consumers:
            self._guarded(consumer, consumer.close)


def use_system_allocator() -> None:
    """Arrow's buffers from the C library's allocator, unless ``ARROW_DEFAULT_MEMORY_POOL`` says
    otherwise. Delivery builds columns of tens of MB that grow by doubling: glibc's realloc moves
    such a block by remapping its pages, where Arrow's default (mimalloc) copies it. bench/deliver
    (delivery alone, segments of 15,000 requests): 0.84 x the CPU (medians of 6, alternating)."""
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        pa.set_memory_pool(pa.system_memory_pool())


def run_forever(build: Callable[[], Deliverer], log_level: str = "INFO") -> None:
    """The deliverer process: poll for sealed segments until SIGTERM, then drain.

    ``build`` makes the deliverer once logging and signals are set up, in this process: its
    consumers hold connections and files that do not cross a process boundary."""
    from beaconlake.logs import setup
    from beaconlake.procname import set_process_name

    setup(log_level)  # a spawned process starts with no logging: ours, JSON lines, tracebacks included
    set_process_name("bl-deliver")
    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    # Delivery is throughput work with a spool to absorb bursts; acknowledging requests is
    # latency work. Under load the workers get the CPU first (backpressure bounds the spool).
    os.nice(10)
    use_system_allocator()
    deliverer = build()
    poll_secs = deliverer.settings.delivery.poll_interval_secs
    while not stop:
        try:
            if not deliverer.run_once():
                time.sleep(poll_secs)
        except Exception:  # a bug in one pass must not stop delivery for good
            log.exception("delivery pass failed; retrying")
            time.sleep(poll_secs)
    deliverer.drain()
    deliverer.close()
