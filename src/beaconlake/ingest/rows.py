"""A spool segment's records as lake rows: one raw row per accepted event, one rejected row
per rejection, and never an exception for what a record holds.

The collector validated every event before acknowledging it, but what sits in the spool is
still read as untrusted bytes: a door that let something through (invalid UTF-8 in props, an
id that is no UUID, a time out of range) must not stop the lake for every other event. So each
record, and each event of it, is turned into a row on its own; one that cannot be goes to
``lake/rejected`` with reason ``undeliverable``, an error that names what was wrong, and an
excerpt of its bytes. Every accepted event ends up exactly once in the raw lake or there.

Rows are gathered as tuples and turned into columns in one go; the per-request fields
(tenant, clocks, IP, user agent) are kept once per request and spread with ``take``. Should
Arrow still refuse the columns, the rows are tried one by one and only the refused go to
``rejected``.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import msgspec
import pyarrow as pa

from beaconlake.config import TenantId
from beaconlake.ingest.collector.validate import excerpt
from beaconlake.types import LEVELS, RAW_SCHEMA, REJECTED_SCHEMA, SpoolRecord

# Events that arrive without an event_id get one derived from where they sit in the spool,
# so a redelivered segment gives them the same id again.
EVENT_ID_NAMESPACE = uuid.UUID("5b0c7d0e-3a43-4a8f-9a7e-bea0c0a1a4e0")
DAY_MS = 86_400_000
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last day a lake partition can name
UNDELIVERABLE = "undeliverable"
# The tenant of a rejected row whose record does not say (or names no possible tenant): tenant
# ids start with [a-z0-9] (config.TenantId), so it is never a real one.
UNKNOWN_TENANT = "_unknown"
_TENANT_META = TenantId.__metadata__[0]  # the config's own rule for a tenant id: one home
_TENANT_RE = re.compile(_TENANT_META.pattern)
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# What decoding or checking one record or event may raise; anything else is a bug, and fails
# the segment's delivery (retried, then parked) rather than hiding as rejected rows.
ROW_ERRORS = (msgspec.DecodeError, RecursionError, ValueError, OverflowError, UnicodeError)
ARROW_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError, UnicodeError)


_PER_RECORD = ("tenant", "received_at", "sent_at", "ip", "user_agent", "ua_browser", "ua_browser_version",
               "ua_os", "ua_os_version", "ua_device", "is_bot")


class StoredEvent(msgspec.Struct):
    """A ClientEvent as it is read back from the spool (lake delivery, the realtime feed):
    validated at the door already, so only what the lake needs is checked again (``_row``),
    and event_id stays text (formatting UUIDs is costly)."""

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


class LooseEnvelope(msgspec.Struct):
    """Only what delivery needs of a body: its events, each left raw to be decoded alone."""

    events: list[msgspec.Raw]


record_decoder = msgspec.msgpack.Decoder(SpoolRecord)
events_decoder = msgspec.json.Decoder(LooseEnvelope)
stored_decoder = msgspec.json.Decoder(StoredEvent)


def lake_event_id(event_id: str | None, segment: str, rec_no: int, idx: int) -> str:
    """The id an event has in the lake: its own, in one canonical spelling (the door accepted
    it as a UUID) so dedupe sees one event; or, when it came without one, an id derived from
    where it sits in the spool, so redelivery gives it the same id again."""
    if event_id is None:
        return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{segment}/{rec_no}/{idx}"))
    return event_id if _CANONICAL_UUID.fullmatch(event_id) else str(uuid.UUID(event_id))


# JSON strings (escapes and all, any bytes inside) and the structural characters between them
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.S)


def split_events(body: bytes) -> list[bytes] | None:
    """The elements of a body's top-level ``events`` array, as bytes, without decoding them;
    None when there is no such array or the brackets do not balance (then no split can be
    trusted to number the events as the collector did). For bodies msgspec cannot split (a
    lone surrogate, or nesting too deep, inside one event): each element is then decoded, and
    refused, alone. Iterative, so no depth is too deep."""
    if not body.lstrip().startswith(b"{"):
        return None
    openers: list[bytes] = []
    key, after_colon, start = None, False, None
    events: list[bytes] | None = None
    for m in _JSON_TOKENS.finditer(body):
        token = m.group()
        if token[:1] == b'"':
            if len(openers) == 1:
                key = token
            after_colon = False
            continue
        if token in (b"[", b"{"):
            if len(openers) == 1 and after_colon and key == b'"events"' and token == b"[" and events is None:
                start, events = m.end(), []
            openers.append(token)
        elif token in (b"]", b"}"):
            if not openers or openers.pop() != (b"[" if token == b"]" else b"{"):
                return None
            if start is not None and len(openers) == 1:  # the events array closed
                last = body[start:m.start()].strip()
                if last:
                    events.append(last)
                start = None
        elif token == b"," and start is not None and len(openers) == 2:
            events.append(body[start:m.start()].strip())
            start = m.end()
        after_colon = token == b":"
    return events if not openers else None


def native_source(context: bytes) -> str:
    """The ``source`` of an event of beaconlake's own ``/v1/events``: the browser tracker names
    itself in ``context.library``; anything else posting there is a plain HTTP client."""
    return "beaconlake.js" if b'"beaconlake.js"' in context else "http"


def day_of(ms: int) -> tuple[int, int, int]:
    d = datetime.fromtimestamp(ms / 1000, UTC)
    return d.year, d.month, d.day


def _text(data: bytes, field: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{field} is not valid UTF-8 (byte {data[exc.start]:#04x} at offset {exc.start})") from None


def _ms(value: int, field: str) -> int:
    if not 0 <= value <= MAX_MS:
        raise ValueError(f"{field}={value} is out of range (0 to {MAX_MS} ms since the epoch)")
    return value


def _is_tenant_id(text: str) -> bool:
    return len(text) <= _TENANT_META.max_length and _TENANT_RE.match(text) is not None


def _check_record(rec: SpoolRecord) -> None:
    # A request no tenant claims (a Snowplow app id nobody declared) is kept as rejections only.
    if not _is_tenant_id(rec.tenant) and not (rec.tenant == UNKNOWN_TENANT and not rec.body):
        raise ValueError(f"tenant {rec.tenant!r} is not a tenant id")
    _ms(rec.received_at, "received_at")
    _ms(rec.sent_at, "sent_at")


class SegmentRows:
    """Rows of one segment, keyed by lake partition; built by ``add`` one record at a time."""

    def __init__(self, segment: str, fallback_ms: int) -> None:
        self.segment = segment
        self.fallback_ms = fallback_ms  # a received_at for rows of records that have no usable one
        self.rows: list[tuple] = []  # per accepted event
        self.raw_events: list[msgspec.Raw] = []  # its bytes, for the excerpt should Arrow refuse the row
        self.where: list[tuple[int, int]] = []  # (record number, index in its batch) of each row
        self.owner: list[int] = []  # index in self.records of each row
        self.records: list[tuple] = []
        self.rejected: dict[tuple, dict[str, list]] = defaultdict(lambda: {f.name: [] for f in REJECTED_SCHEMA})
        self.undeliverable = 0  # accepted events (or records) that went to rejected instead

    def reject(self, tenant: str, received_at: int, index: int, reason: str, error: str, excerpt_text: str,
               ip: str | None = None, user_agent: str | None = None) -> None:
        if not INT32_MIN <= index <= INT32_MAX:
            error, index = f"{error} (index {index} does not fit the column: stored as -1)", -1
        cols = self.rejected[(tenant, *day_of(received_at))]
        for name, value in zip(
            ("tenant", "received_at", "index", "reason", "error", "excerpt", "ip", "user_agent", "segment"),
            (tenant, received_at, index, reason, error, excerpt_text, ip, user_agent, self.segment),
        ):
            cols[name].append(value)

    def undeliverable_event(self, rec: SpoolRecord, received_at: int, index: int, error: str, data: bytes) -> None:
        self.undeliverable += 1
        self.reject(rec.tenant, received_at, index, UNDELIVERABLE, error, excerpt(data), rec.ip, rec.user_agent)

    def add(self, rec_no: int, payload: bytes) -> None:
        try:
            rec = record_decoder.decode(payload)
            _check_record(rec)
        except ROW_ERRORS as exc:
            return self._bad_record(rec_no, payload, exc)
        for rej in rec.rejected:  # the door's rejections, kept as they were made
            self.reject(rec.tenant, rec.received_at, rej.index, rej.reason, rej.error, rej.excerpt, rec.ip, rec.user_agent)
        if not rec.body:
            return
        try:
            events = events_decoder.decode(rec.body).events
        except ROW_ERRORS as exc:
            events = split_events(rec.body)  # one bad event must not sink the others of its batch
            if events is None:
                error = f"spool record {rec_no}, the request body cannot be split into events ({exc})"
                for idx in [-1] if rec.accepted is None else dict.fromkeys(rec.accepted):
                    self.undeliverable_event(rec, rec.received_at, idx, error, rec.body)
                return
        ua = rec.ua
        record_at = len(self.records)
        self.records.append((rec.tenant, rec.received_at, rec.sent_at, rec.ip, rec.user_agent, ua.browser,
                             ua.browser_version, ua.os, ua.os_version, ua.device, ua.is_bot))
        clients = rec.clients or {}
        sent_at, skew = rec.sent_at, rec.received_at - rec.sent_at
        for idx in range(len(events)) if rec.accepted is None else dict.fromkeys(rec.accepted):
            if not 0 <= idx < len(events):
                self.undeliverable_event(rec, rec.received_at, idx, f"spool record {rec_no}, events[{idx}]: accepted, "
                                         f"but the batch has {len(events)} event(s)", rec.body)
                continue
            raw = events[idx]
            try:
                self.rows.append(self._row(raw, sent_at, skew, rec_no, idx, rec.source))
            except ROW_ERRORS as exc:
                self.undeliverable_event(rec, rec.received_at, idx, f"spool record {rec_no}, events[{idx}]: {exc}", bytes(raw))
                continue
            self.raw_events.append(raw)
            self.where.append((rec_no, idx))
            client = clients.get(idx)
            if client is None:
                self.owner.append(record_at)
            else:  # the event's own end user, not the server that sent it: a row of request fields of its own
                self.owner.append(len(self.records))
                cua = client.ua
                self.records.append((rec.tenant, rec.received_at, rec.sent_at, client.ip, client.user_agent, cua.browser,
                                     cua.browser_version, cua.os, cua.os_version, cua.device, cua.is_bot))

    def _row(self, raw: msgspec.Raw, sent_at: int, skew: int, rec_no: int, idx: int, source: str | None) -> tuple:
        # the hot path of delivery: checks inline, no call that the usual event does not need
        ev = stored_decoder.decode(raw)
        if ev.level not in LEVELS:
            raise ValueError(f"level {ev.level!r} is not one of {', '.join(LEVELS)}")
        client_ts = ev.client_ts
        if client_ts is None:
            client_ts = sent_at
        elif not 0 <= client_ts <= MAX_MS:
            raise ValueError(f"client_ts={client_ts} is out of range (0 to {MAX_MS} ms since the epoch)")
        # Clock-skew correction: the client's clock may be off, but the interval between the
        # event and the send is measured on one clock, so anchor it to ours.
        event_ts = client_ts + skew
        if not 0 <= event_ts <= MAX_MS:
            raise ValueError(f"event_ts={event_ts} (received_at - (sent_at - client_ts)) is out of range")
        props, context = bytes(ev.props), bytes(ev.context)
        return (lake_event_id(ev.event_id, self.segment, rec_no, idx), ev.level, ev.name, ev.anonymous_id,
                ev.user_id, ev.session_id, client_ts, event_ts, ev.url, ev.referrer, ev.title,
                None if props == b"null" else _text(props, "props"),
                None if context == b"null" else _text(context, "context"),
                source or native_source(context))

    def _bad_record(self, rec_no: int, payload: bytes, exc: BaseException) -> None:
        self.undeliverable += 1
        tenant, received_at = UNKNOWN_TENANT, self.fallback_ms
        error = f"spool record {rec_no} cannot be read as a request: {exc}"
        try:  # say whose it is when the record itself decodes
            rec = record_decoder.decode(payload)
        except ROW_ERRORS:
            rec = None
        if rec is not None and _is_tenant_id(rec.tenant):
            tenant = rec.tenant
            received_at = rec.received_at if 0 <= rec.received_at <= MAX_MS else self.fallback_ms
        self.reject(tenant, received_at, -1, UNDELIVERABLE, error, excerpt(payload))

    # -- columns ---------------------------------------------------------------------------

    def tables(self) -> tuple[dict[tuple, pa.Table], dict[tuple, pa.Table]]:
        """(raw tables by (tenant, level, y, m, d), rejected tables by (tenant, y, m, d))."""
        raw: dict[tuple, pa.Table] = {}
        if self.rows:
            per_record = self._record_columns()
            try:
                table = self._raw_table(per_record)
            except ARROW_ERRORS:
                table = self._raw_table_row_by_row(per_record)
            if table is not None:
                raw = _partition(table)
        rejected = {k: pa.Table.from_pydict(v, schema=REJECTED_SCHEMA) for k, v in self.rejected.items()}
        return raw, rejected

    def _record_columns(self) -> list[pa.Array]:
        """The per-request columns, one value per record (checked in ``add``: they convert)."""
        return [pa.array(col, RAW_SCHEMA.field(f).type) for col, f in zip(zip(*self.records), _PER_RECORD)]

    def _raw_table(self, per_record: list[pa.Array], which: list[int] | None = None) -> pa.Table:
        """The raw table of every row, or of the rows ``which``."""
        rows = self.rows if which is None else [self.rows[i] for i in which]
        (event_id, level, name, anon, user_id, session_id, client_ts, event_ts, url, referrer, title, props, context,
         source) = zip(*rows)
        rec_of = pa.array(self.owner if which is None else [self.owner[i] for i in which], pa.int32())
        spread = dict(zip(_PER_RECORD, (col.take(rec_of) for col in per_record)))
        text = pa.string()
        columns = {
            "event_id": pa.array(event_id, text), "level": pa.array(level, text),
            "name": pa.array(name, text), "anonymous_id": pa.array(anon, text),
            "user_id": pa.array(user_id, text), "session_id": pa.array(session_id, text),
            "client_ts": pa.array(client_ts, pa.int64()), "event_ts": pa.array(event_ts, pa.int64()),
            "url": pa.array(url, text), "referrer": pa.array(referrer, text), "title": pa.array(title, text),
            "props": pa.array(props, text), "context": pa.array(context, text),
            "segment": pa.array([self.segment] * len(rows), text), "source": pa.array(source, text), **spread,
        }
        return pa.Table.from_pydict({f.name: columns[f.name] for f in RAW_SCHEMA}, schema=RAW_SCHEMA)

    def _raw_table_row_by_row(self, per_record: list[pa.Array]) -> pa.Table | None:
        good = []
        for i in range(len(self.rows)):
            try:
                self._raw_table(per_record, [i])
            except ARROW_ERRORS as exc:
                rec_no, idx = self.where[i]
                tenant, received_at, _, ip, user_agent = self.records[self.owner[i]][:5]
                self.undeliverable += 1
                self.reject(tenant, received_at, idx, UNDELIVERABLE,
                            f"spool record {rec_no}, events[{idx}]: cannot be stored in the lake: {exc}",
                            excerpt(bytes(self.raw_events[i])), ip, user_agent)
            else:
                good.append(i)
        return self._raw_table(per_record, good) if good else None


def _partition(table: pa.Table) -> dict[tuple, pa.Table]:
    """Split by (tenant, level, UTC day of event_ts)."""
    days = [ts // DAY_MS for ts in table["event_ts"].to_pylist()]
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, key in enumerate(zip(table["tenant"].to_pylist(), table["level"].to_pylist(), days)):
        groups[key].append(i)
    out = {}
    for (tenant, level, day), idx in groups.items():
        out[(tenant, level, *day_of(day * DAY_MS))] = table.take(pa.array(idx, pa.int32()))
    return out


def segment_rows(segment: str, frames: list[bytes], fallback_ms: int) -> SegmentRows:
    rows = SegmentRows(segment, fallback_ms)
    for rec_no, payload in enumerate(frames):
        rows.add(rec_no, payload)
    return rows
