"""A spool segment's records as lake rows: one raw row per accepted event, one rejected row
per rejection, and never an exception for what a record holds.

The collector validated every event before acknowledging it, but what sits in the spool is
still read as untrusted bytes: a door that let something through (invalid UTF-8 in props, an
id that is no UUID, a time out of range) must not stop the lake for every other event. So each
record, and each event of it, is decoded on its own (``lake/records.py``, the decoder the
realtime feed uses too); one that cannot become a row goes to ``lake/rejected`` with reason
``undeliverable``, an error that names what was wrong, and an excerpt of its bytes. Every
accepted event ends up exactly once in the raw lake or there.

Rows are gathered as tuples and turned into columns in one go; the per-request fields
(tenant, clocks, IP, user agent, source) are kept once per request and spread with ``take``. Should
Arrow still refuse the columns, the rows are tried one by one and only the refused go to
``rejected``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from beaconlake.ingest.collector.validate import excerpt
from beaconlake.lake.records import (
    MAX_MS,
    ROW_ERRORS,
    UNKNOWN_TENANT,
    LakeEvent,
    event_bytes,
    is_tenant_id,
    read_record,
    record_decoder,
    record_events,
)
from beaconlake.types import RAW_SCHEMA, REJECTED_SCHEMA, SpoolRecord, UserAgent
from beaconlake.units import DAY_MS, day_of

UNDELIVERABLE = "undeliverable"
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
ARROW_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError, UnicodeError)


# A LakeEvent as Arrow converts it: its fields are the raw lake's columns of the same names, but
# for the batch index, which is converted and not stored.
_EVENT_FIELDS = LakeEvent._fields
_EVENT_STRUCT = pa.struct([RAW_SCHEMA.field(f).with_nullable(True) if f in RAW_SCHEMA.names else pa.field(f, pa.int64())
                           for f in _EVENT_FIELDS])
_PER_RECORD = ("tenant", "received_at", "sent_at", "ip", "user_agent", "ua_browser", "ua_browser_version",
               "ua_os", "ua_os_version", "ua_device", "is_bot", "source")
NATIVE_LIBRARY = '"beaconlake.js"'  # how the browser tracker names itself in an event's context.library


class SegmentRows:
    """Rows of one segment, keyed by lake partition; built by ``add`` one record at a time.
    Which events become rows is ``lake.records``' decision (the realtime feed takes the same)."""

    def __init__(self, segment: str, fallback_ms: int) -> None:
        self.segment = segment
        self.fallback_ms = fallback_ms  # a received_at for rows of records that have no usable one
        self.rows: list[LakeEvent] = []  # per accepted event
        self.owner: list[int] = []  # index in self.records of each row
        self.records: list[tuple] = []  # the per-request columns of each record with rows
        self.bodies: list[tuple[int, bytes]] = []  # (record number, body) of each: for excerpts
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

    def undeliverable_event(self, rec: SpoolRecord, index: int, error: str, data: bytes) -> None:
        self.undeliverable += 1
        self.reject(rec.tenant, rec.received_at, index, UNDELIVERABLE, error, excerpt(data), rec.ip, rec.user_agent)

    def add(self, rec_no: int, payload: bytes) -> None:
        try:
            rec = read_record(payload)
        except ROW_ERRORS as exc:
            return self._bad_record(rec_no, payload, exc)
        for rej in rec.rejected:  # the door's rejections, kept as they were made
            self.reject(rec.tenant, rec.received_at, rej.index, rej.reason, rej.error, rej.excerpt, rec.ip, rec.user_agent)
        events, failed = record_events(rec, self.segment, rec_no)
        for index, error, data in failed:
            self.undeliverable_event(rec, index, error, data)
        if not events:
            return
        self.owner += [len(self.records)] * len(events)
        self.records.append(_request_columns(rec, rec.ip, rec.user_agent, rec.ua))
        self.bodies.append((rec_no, rec.body))
        first = len(self.rows)
        self.rows += events
        if rec.clients:
            self._end_users(rec, rec_no, first)

    def _end_users(self, rec: SpoolRecord, rec_no: int, first: int) -> None:
        """Events that named their own end user (``SpoolRecord.clients``) get that user's agent and
        address, not the sending server's: a record's worth of request columns of their own."""
        for row in range(first, len(self.rows)):
            client = rec.clients.get(self.rows[row].index)
            if client is not None:
                self.owner[row] = len(self.records)
                self.records.append(_request_columns(rec, client.ip, client.user_agent, client.ua))
                self.bodies.append((rec_no, rec.body))

    def _bad_record(self, rec_no: int, payload: bytes, exc: BaseException) -> None:
        self.undeliverable += 1
        tenant, received_at = UNKNOWN_TENANT, self.fallback_ms
        error = f"spool record {rec_no} cannot be read as a request: {exc}"
        try:  # say whose it is when the record itself decodes
            rec = record_decoder.decode(payload)
        except ROW_ERRORS:
            rec = None
        if rec is not None and is_tenant_id(rec.tenant):
            tenant = rec.tenant
            received_at = rec.received_at if 0 <= rec.received_at <= MAX_MS else self.fallback_ms
        self.reject(tenant, received_at, -1, UNDELIVERABLE, error, excerpt(payload))

    def events(self) -> Iterator[tuple[str, LakeEvent]]:
        """(tenant, event) for every accepted event the lake can store, in segment order: what the
        realtime consumer is fed, from this one decode of the segment."""
        records = self.records
        for owner, ev in zip(self.owner, self.rows):
            yield records[owner][0], ev

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
        # Arrow reads the tuples as one struct column and splits it in C++: half the CPU of
        # transposing them in Python (zip) and converting column by column.
        columns = dict(zip(_EVENT_FIELDS, pa.array(rows, _EVENT_STRUCT).flatten()))
        rec_of = pa.array(self.owner if which is None else [self.owner[i] for i in which], pa.int32())
        columns.update(zip(_PER_RECORD, (col.take(rec_of) for col in per_record)))
        columns["segment"] = pa.array([self.segment] * len(rows), pa.string())
        columns["source"] = _native_sources(columns["source"], columns["context"])
        return pa.Table.from_pydict({f.name: columns[f.name] for f in RAW_SCHEMA}, schema=RAW_SCHEMA)

    def _raw_table_row_by_row(self, per_record: list[pa.Array]) -> pa.Table | None:
        good = []
        for i in range(len(self.rows)):
            try:
                self._raw_table(per_record, [i])
            except ARROW_ERRORS as exc:
                idx = self.rows[i].index
                tenant, received_at, _, ip, user_agent = self.records[self.owner[i]][:5]
                rec_no, body = self.bodies[self.owner[i]]
                self.undeliverable += 1
                self.reject(tenant, received_at, idx, UNDELIVERABLE,
                            f"spool record {rec_no}, events[{idx}]: cannot be stored in the lake: {exc}",
                            excerpt(event_bytes(body, idx)), ip, user_agent)
            else:
                good.append(i)
        return self._raw_table(per_record, good) if good else None


def _request_columns(rec: SpoolRecord, ip: str | None, user_agent: str | None, ua: UserAgent) -> tuple:
    """A record's per-request columns (``_PER_RECORD``), with the address and agent given: the
    request's own, or those of an end user an event names."""
    return (rec.tenant, rec.received_at, rec.sent_at, ip, user_agent, ua.browser, ua.browser_version, ua.os,
            ua.os_version, ua.device, ua.is_bot, rec.source or None)


def _native_sources(source: pa.Array, context: pa.Array) -> pa.Array:
    """``source`` with the events of beaconlake's own ``/v1/events`` (a record that names no
    source) told apart: the browser tracker names itself in ``context.library``; anything else
    posting there is a plain HTTP client."""
    if source.null_count == 0:
        return source
    tracker = pc.fill_null(pc.match_substring(context, NATIVE_LIBRARY), False)
    return pc.coalesce(source, pc.if_else(tracker, "beaconlake.js", "http"))


def _partition(table: pa.Table) -> dict[tuple, pa.Table]:
    """Split by (tenant, level, UTC day of event_ts), in Arrow: a segment holds few partitions and
    many rows, so the rows are never visited in Python. Rows keep their order within a part."""
    days = pc.divide(table["event_ts"], pa.scalar(DAY_MS, pa.int64()))  # event_ts >= 0: the floor
    keys = table.select(["tenant", "level"]).append_column("day", days)
    parts = keys.group_by(["tenant", "level", "day"], use_threads=False).aggregate([])
    if parts.num_rows == 1:
        [(tenant, level, day)] = zip(*(parts[c].to_pylist() for c in ("tenant", "level", "day")))
        return {(tenant, level, *day_of(day * DAY_MS)): table}
    out = {}
    for tenant, level, day in zip(*(parts[c].to_pylist() for c in ("tenant", "level", "day"))):
        mask = pc.and_(pc.and_(pc.equal(keys["tenant"], tenant), pc.equal(keys["level"], level)), pc.equal(days, day))
        out[(tenant, level, *day_of(day * DAY_MS))] = table.filter(mask)
    return out


def segment_rows(segment: str, frames: list[bytes], fallback_ms: int) -> SegmentRows:
    rows = SegmentRows(segment, fallback_ms)
    for rec_no, payload in enumerate(frames):
        rows.add(rec_no, payload)
    return rows
