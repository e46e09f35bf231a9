"""Lake delivery: sealed spool segments become zstd Parquet files in the raw lake.

Each segment is split by (tenant, level, UTC day of ``event_ts``) and written to::

    raw/tenant=T/level=L/year=YYYY/month=MM/day=DD/<segment>.parquet
    rejected/tenant=T/year=YYYY/month=MM/day=DD/<segment>.parquet

File names come from the segment name, so delivering a segment twice (a crash between
writing the files and deleting the segment) rewrites the same files: at-least-once with
no duplicates. The segment is deleted only after every one of its files is durable.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from beaconlake.backends.storage import Storage, open_storage
from beaconlake.config import Settings
from beaconlake.errors import SpoolCorrupt, StorageError
from beaconlake.ingest import spool
from beaconlake.telemetry import Metrics
from beaconlake.types import RAW_SCHEMA, REJECTED_SCHEMA, ClientEvent, Envelope, SpoolRecord

log = logging.getLogger(__name__)

# Events that arrive without an event_id get one derived from where they sit in the spool,
# so a redelivered segment gives them the same id again.
EVENT_ID_NAMESPACE = uuid.UUID("5b0c7d0e-3a43-4a8f-9a7e-bea0c0a1a4e0")

_record_decoder = msgspec.msgpack.Decoder(SpoolRecord)
_envelope_decoder = msgspec.json.Decoder(Envelope)
_event_decoder = msgspec.json.Decoder(ClientEvent)


def _day(ms: int) -> tuple[int, int, int]:
    d = datetime.fromtimestamp(ms / 1000, UTC)
    return d.year, d.month, d.day


def _text(raw: msgspec.Raw) -> str | None:
    data = bytes(raw)
    return None if data == b"null" else data.decode("utf-8")


def segment_tables(path: Path) -> tuple[dict[tuple, pa.Table], dict[tuple, pa.Table]]:
    """Read one segment into Arrow tables keyed by lake partition."""
    segment = path.stem
    raw: dict[tuple, dict[str, list]] = defaultdict(lambda: {f.name: [] for f in RAW_SCHEMA})
    rejected: dict[tuple, dict[str, list]] = defaultdict(lambda: {f.name: [] for f in REJECTED_SCHEMA})
    for rec_no, payload in enumerate(spool.read_frames(path)):
        rec = _record_decoder.decode(payload)
        ua = rec.ua
        events = _envelope_decoder.decode(rec.body).events if rec.body else []
        for idx in range(len(events)) if rec.accepted is None else rec.accepted:
            ev = _event_decoder.decode(events[idx])
            client_ts = ev.client_ts if ev.client_ts is not None else rec.sent_at
            # Clock-skew correction: the client's clock may be off, but the interval between
            # the event and the send is measured on one clock, so anchor it to ours.
            event_ts = rec.received_at - (rec.sent_at - client_ts)
            cols = raw[(rec.tenant, ev.level, *_day(event_ts))]
            cols["event_id"].append(str(ev.event_id or uuid.uuid5(EVENT_ID_NAMESPACE, f"{segment}/{rec_no}/{idx}")))
            cols["tenant"].append(rec.tenant)
            cols["level"].append(ev.level)
            cols["name"].append(ev.name)
            cols["anonymous_id"].append(ev.anonymous_id)
            cols["user_id"].append(ev.user_id)
            cols["session_id"].append(ev.session_id)
            cols["client_ts"].append(client_ts)
            cols["sent_at"].append(rec.sent_at)
            cols["received_at"].append(rec.received_at)
            cols["event_ts"].append(event_ts)
            cols["url"].append(ev.url)
            cols["referrer"].append(ev.referrer)
            cols["title"].append(ev.title)
            cols["props"].append(_text(ev.props))
            cols["context"].append(_text(ev.context))
            cols["ip"].append(rec.ip)
            cols["user_agent"].append(rec.user_agent)
            cols["ua_browser"].append(ua.browser)
            cols["ua_browser_version"].append(ua.browser_version)
            cols["ua_os"].append(ua.os)
            cols["ua_os_version"].append(ua.os_version)
            cols["ua_device"].append(ua.device)
            cols["is_bot"].append(ua.is_bot)
            cols["segment"].append(segment)
        for rej in rec.rejected:
            cols = rejected[(rec.tenant, *_day(rec.received_at))]
            cols["tenant"].append(rec.tenant)
            cols["received_at"].append(rec.received_at)
            cols["index"].append(rej.index)
            cols["reason"].append(rej.reason)
            cols["error"].append(rej.error)
            cols["excerpt"].append(rej.excerpt)
            cols["ip"].append(rec.ip)
            cols["user_agent"].append(rec.user_agent)
            cols["segment"].append(segment)
    return (
        {k: pa.Table.from_pydict(v, schema=RAW_SCHEMA) for k, v in raw.items()},
        {k: pa.Table.from_pydict(v, schema=REJECTED_SCHEMA) for k, v in rejected.items()},
    )


def raw_key(tenant: str, level: str, y: int, m: int, d: int, segment: str) -> str:
    return f"raw/tenant={tenant}/level={level}/year={y:04d}/month={m:02d}/day={d:02d}/{segment}.parquet"


def rejected_key(tenant: str, y: int, m: int, d: int, segment: str) -> str:
    return f"rejected/tenant={tenant}/year={y:04d}/month={m:02d}/day={d:02d}/{segment}.parquet"


def _parquet_bytes(table: pa.Table, zstd_level: int) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", compression_level=zstd_level)
    return buf.getvalue()


class Deliverer:
    def __init__(self, settings: Settings, storage: Storage | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.root = settings.spool_path
        self.storage = storage or open_storage(settings.storage)
        self.metrics = metrics or Metrics(settings.run_path, role="deliver")
        self.corrupt_dir = self.root / "corrupt"
        self._failures: dict[str, tuple[int, float]] = {}  # segment -> (attempts, next try)
        self.realtime = None
        if settings.realtime.enabled:
            from beaconlake.realtime.consumer import RealtimeConsumer

            self.realtime = RealtimeConsumer(settings, self.storage, self.metrics)

    def deliver_segment(self, path: Path) -> tuple[int, int]:
        """Write one segment's files, then delete it. Returns (events, rejections)."""
        raw, rejected = segment_tables(path)
        level = self.settings.delivery.zstd_level
        events = rejections = 0
        for (tenant, lvl, y, m, d), table in sorted(raw.items()):
            self.storage.put(raw_key(tenant, lvl, y, m, d, path.stem), _parquet_bytes(table, level))
            events += table.num_rows
        for (tenant, y, m, d), table in sorted(rejected.items()):
            self.storage.put(rejected_key(tenant, y, m, d, path.stem), _parquet_bytes(table, level))
            rejections += table.num_rows
        path.unlink()
        spool._fsync_dir(path.parent)
        return events, rejections

    def run_once(self) -> int:
        """Deliver every sealed segment that is due; return how many were delivered."""
        done = 0
        now = time.monotonic()
        segments = spool.sealed_segments(self.root)
        oldest = min((p.stat().st_mtime for p in segments if p.exists()), default=None)
        self.metrics.set("beaconlake_delivery_lag_seconds", 0.0 if oldest is None else max(0.0, time.time() - oldest))
        if self.realtime is not None:
            try:
                # before delivery deletes them: sequence detection and high-level indexing
                self.realtime.process(segments)
            except Exception:  # realtime is best-effort; lake delivery must go on
                self.metrics.inc("beaconlake_realtime_failures_total")
                log.exception("realtime pass failed; lake delivery continues")
        for path in segments:
            attempts, next_try = self._failures.get(path.name, (0, 0.0))
            if next_try > now:
                continue
            try:
                events, rejections = self.deliver_segment(path)
            except (StorageError, OSError) as exc:
                attempts += 1
                delay = min(self.settings.delivery.max_retry_secs, 0.5 * 2**attempts)
                self._failures[path.name] = (attempts, now + delay)
                self.metrics.inc("beaconlake_delivery_failures_total")
                log.error("delivery of %s failed (attempt %d, next in %.1fs): %s", path.name, attempts, delay, exc)
                continue
            except (SpoolCorrupt, msgspec.DecodeError) as exc:
                # Never delete what we cannot read: park it for a human, and keep going.
                self.corrupt_dir.mkdir(exist_ok=True)
                os.replace(path, self.corrupt_dir / path.name)
                self.metrics.inc("beaconlake_delivery_failures_total")
                log.error("segment %s is unreadable, moved to %s: %s", path.name, self.corrupt_dir, exc)
                continue
            self._failures.pop(path.name, None)
            self.metrics.inc("beaconlake_events_delivered_total", events)
            self.metrics.inc("beaconlake_rejections_delivered_total", rejections)
            self.metrics.inc("beaconlake_segments_delivered_total")
            done += 1
        self.metrics.set("beaconlake_spool_undelivered_bytes", spool.undelivered_bytes(self.root))
        self.metrics.write_snapshot()
        return done

    def drain(self) -> None:
        """Deliver everything sealed now, retrying failures until they succeed or time runs out."""
        deadline = time.monotonic() + self.settings.delivery.drain_timeout_secs
        while spool.sealed_segments(self.root) and time.monotonic() < deadline:
            if not self.run_once():
                time.sleep(self.settings.delivery.poll_interval_secs)


def run_forever(settings: Settings) -> None:
    """The deliverer process: poll for sealed segments until SIGTERM, then drain."""
    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    deliverer = Deliverer(settings)
    while not stop:
        try:
            if not deliverer.run_once():
                time.sleep(settings.delivery.poll_interval_secs)
        except Exception:  # a bug in one pass must not stop delivery for good
            log.exception("delivery pass failed; retrying")
            time.sleep(settings.delivery.poll_interval_secs)
    deliverer.drain()
    if deliverer.realtime is not None:
        deliverer.realtime.close()
