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
import pyarrow.compute as pc
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


class StoredEvent(msgspec.Struct):
    """A ClientEvent as it is read back from the spool (lake delivery, the realtime feed):
    validated at the door already, so no constraints to check again, and event_id stays
    text (formatting UUIDs is costly)."""

    level: str
    name: str
    anonymous_id: str
    event_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    client_ts: int | None = None
    url: str | None = None
    referrer: str | None = None
    title: str | None = None
    props: msgspec.Raw = msgspec.Raw(b"null")
    context: msgspec.Raw = msgspec.Raw(b"null")


_stored_decoder = msgspec.json.Decoder(StoredEvent)
DAY_MS = 86_400_000


def lake_event_id(event_id: str | None, segment: str, rec_no: int, idx: int) -> str:
    """The id an event has in the lake: its own, in one canonical spelling (the door accepted
    it as a UUID) so dedupe sees one event; or, when it came without one, an id derived from
    where it sits in the spool, so redelivery gives it the same id again."""
    if event_id is None:
        return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{segment}/{rec_no}/{idx}"))
    return event_id if len(event_id) == 36 and event_id.islower() else str(uuid.UUID(event_id))


def segment_tables(path: Path) -> tuple[dict[tuple, pa.Table], dict[tuple, pa.Table]]:
    """Read one segment into Arrow tables keyed by lake partition.

    Rows are gathered as tuples and turned into columns in one go; the per-request fields
    (tenant, clocks, IP, user agent) are kept once per request and spread with ``take``."""
    segment = path.stem
    rows: list[tuple] = []
    where: list[tuple[int, int]] = []  # (record number, index in its batch) of each row
    records: list[tuple] = []
    rejected: dict[tuple, dict[str, list]] = defaultdict(lambda: {f.name: [] for f in REJECTED_SCHEMA})
    for rec_no, payload in enumerate(spool.read_frames(path)):
        rec = _record_decoder.decode(payload)
        ua = rec.ua
        records.append((rec.tenant, rec.received_at, rec.sent_at, rec.ip, rec.user_agent, ua.browser,
                        ua.browser_version, ua.os, ua.os_version, ua.device, ua.is_bot))
        events = _envelope_decoder.decode(rec.body).events if rec.body else []
        for idx in range(len(events)) if rec.accepted is None else rec.accepted:
            rows.append(msgspec.structs.astuple(_stored_decoder.decode(events[idx])))
            where.append((rec_no, idx))
        for rej in rec.rejected:
            cols = rejected[(rec.tenant, *_day(rec.received_at))]
            for name, value in zip(
                ("tenant", "received_at", "index", "reason", "error", "excerpt", "ip", "user_agent", "segment"),
                (rec.tenant, rec.received_at, rej.index, rej.reason, rej.error, rej.excerpt, rec.ip, rec.user_agent, segment),
            ):
                cols[name].append(value)
    rejected_tables = {k: pa.Table.from_pydict(v, schema=REJECTED_SCHEMA) for k, v in rejected.items()}
    if not rows:
        return {}, rejected_tables
    return _partition(_raw_table(segment, rows, where, records), [records[r][0] for r, _ in where]), rejected_tables


def _raw_table(segment: str, rows: list[tuple], where: list[tuple[int, int]], records: list[tuple]) -> pa.Table:
    level, name, anon, event_id, user_id, session_id, client_ts, url, referrer, title, props, context = zip(*rows)
    per_record = list(zip(*records))
    rec_of = pa.array([r for r, _ in where], pa.int32())
    spread = [pa.array(col, RAW_SCHEMA.field(f).type).take(rec_of) for col, f in zip(per_record, (
        "tenant", "received_at", "sent_at", "ip", "user_agent", "ua_browser", "ua_browser_version",
        "ua_os", "ua_os_version", "ua_device", "is_bot"))]
    tenant, received_at, sent_at, ip, user_agent, browser, browser_version, os_, os_version, device, is_bot = spread
    ids = [lake_event_id(e, segment, r, i) for e, (r, i) in zip(event_id, where)]
    client = pc.fill_null(pa.array(client_ts, pa.int64()), sent_at)
    # Clock-skew correction: the client's clock may be off, but the interval between the
    # event and the send is measured on one clock, so anchor it to ours.
    event_ts = pc.subtract(received_at, pc.subtract(sent_at, client))
    columns = {
        "event_id": pa.array(ids, pa.string()), "tenant": tenant, "level": pa.array(level, pa.string()),
        "name": pa.array(name, pa.string()), "anonymous_id": pa.array(anon, pa.string()),
        "user_id": pa.array(user_id, pa.string()), "session_id": pa.array(session_id, pa.string()),
        "client_ts": client, "sent_at": sent_at, "received_at": received_at, "event_ts": event_ts,
        "url": pa.array(url, pa.string()), "referrer": pa.array(referrer, pa.string()),
        "title": pa.array(title, pa.string()),
        "props": pa.array([_text(p) for p in props], pa.string()),
        "context": pa.array([_text(c) for c in context], pa.string()),
        "ip": ip, "user_agent": user_agent, "ua_browser": browser, "ua_browser_version": browser_version,
        "ua_os": os_, "ua_os_version": os_version, "ua_device": device, "is_bot": is_bot,
        "segment": pa.array([segment] * len(ids), pa.string()),
    }
    return pa.Table.from_pydict(columns, schema=RAW_SCHEMA)


def _partition(table: pa.Table, tenants: list[str]) -> dict[tuple, pa.Table]:
    """Split by (tenant, level, UTC day of event_ts)."""
    days = [ts // DAY_MS for ts in table["event_ts"].to_pylist()]
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, key in enumerate(zip(tenants, table["level"].to_pylist(), days)):
        groups[key].append(i)
    out = {}
    for (tenant, level, day), idx in groups.items():
        out[(tenant, level, *_day(day * DAY_MS))] = table.take(pa.array(idx, pa.int32()))
    return out


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
    # Delivery is throughput work with a spool to absorb bursts; acknowledging requests is
    # latency work. Under load the workers get the CPU first (backpressure bounds the spool).
    os.nice(10)
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
