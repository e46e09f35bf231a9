"""A spool record's events as the lake has them: the one decoder of what the collector spooled.

Lake delivery (``ingest/rows.py``, which turns the events into Parquet rows) and the realtime
feed (``realtime/feed.py``, which detects sequences and indexes high-level events before
delivery) both read spooled records through ``read_record`` and ``record_events``, so they
agree on every event: the same accept/undeliverable decision, the same ``event_id`` (an event
that came without one gets an id derived from where it sits in the spool, the same on every
redelivery) and the same ``event_ts``. A high-level event's ``matched_event_ids`` therefore
name rows that are in the lake, and nothing the lake refuses is counted by realtime.

Clock-skew correction: the client's clock may be off, but the interval between an event and
the request's ``sent_at`` is measured on that one clock, so ``event_ts = client_ts +
(received_at - sent_at)`` anchors it to ours. An event without ``client_ts`` happened when it
was sent.

What sits in the spool was validated at the door, but it is read back as untrusted bytes: a
record or event that cannot be decoded or checked raises one of ``ROW_ERRORS`` (and nothing
else: anything else is a bug), which delivery turns into a rejected row and the feed skips.
"""

from __future__ import annotations

import re
import uuid
from typing import NamedTuple

import msgspec

from beaconlake.sections import TenantId
from beaconlake.types import LEVELS, SpoolRecord

# Events that arrive without an event_id get one derived from where they sit in the spool,
# so a redelivered segment gives them the same id again.
EVENT_ID_NAMESPACE = uuid.UUID("5b0c7d0e-3a43-4a8f-9a7e-bea0c0a1a4e0")
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last day a lake partition can name
# What decoding or checking one record or event may raise; anything else is a bug, and fails
# the segment's delivery (retried, then parked) rather than hiding as rejected rows.
ROW_ERRORS = (msgspec.DecodeError, RecursionError, ValueError, OverflowError, UnicodeError)
# The tenant of a rejected row whose record does not say (or names no possible tenant), and of
# a request no tenant claims (a Snowplow app id nobody declared): tenant ids start with [a-z0-9]
# (sections.TenantId), so it is never a real one.
UNKNOWN_TENANT = "_unknown"
_TENANT_META = TenantId.__metadata__[0]  # the config's own rule for a tenant id: one home
_TENANT_RE = re.compile(_TENANT_META.pattern)
_UUID_TEXT = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_CANONICAL_UUID = re.compile(_UUID_TEXT)
_canonical = _CANONICAL_UUID.fullmatch
_CANONICAL_CHARS = b"0123456789abcdef-,"  # what _canonical_ids leaves of ids joined: nothing


class StoredEvent(msgspec.Struct):
    """A ClientEvent as it is read back from the spool: validated at the door already, so only
    what the lake needs is checked again (``record_events``), and event_id stays text
    (formatting UUIDs is costly)."""

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


class LakeEvent(NamedTuple):
    """One accepted event as the lake stores it. Its first 13 fields are the raw lake's event
    columns in ``RAW_SCHEMA`` order (the per-request columns come from the record)."""

    event_id: str
    level: str
    name: str
    anonymous_id: str
    user_id: str | None
    session_id: str | None
    client_ts: int
    event_ts: int
    url: str | None
    referrer: str | None
    title: str | None
    props: str | None  # JSON text; None when the event had none
    context: str | None
    index: int  # position in its request's batch


class _LooseEnvelope(msgspec.Struct):
    """Only what the lake needs of a body: its events, each left raw to be decoded alone."""

    events: list[msgspec.Raw]


class _StoredEnvelope(msgspec.Struct):
    """The same body decoded in one call: the fast path when every event decodes."""

    events: list[StoredEvent]


record_decoder = msgspec.msgpack.Decoder(SpoolRecord)
_loose = msgspec.json.Decoder(_LooseEnvelope)
_stored = msgspec.json.Decoder(_StoredEnvelope)
_event = msgspec.json.Decoder(StoredEvent)
_new = tuple.__new__
_NULL = msgspec.Raw(b"null")


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


def is_tenant_id(text: str) -> bool:
    return len(text) <= _TENANT_META.max_length and _TENANT_RE.match(text) is not None


def _not_utf8(data: msgspec.Raw, field: str, exc: UnicodeDecodeError) -> ValueError:
    return ValueError(f"{field} is not valid UTF-8 (byte {bytes(data)[exc.start]:#04x} at offset {exc.start})")


def _ms(value: int, field: str) -> int:
    if not 0 <= value <= MAX_MS:
        raise ValueError(f"{field}={value} is out of range (0 to {MAX_MS} ms since the epoch)")
    return value


def read_record(payload: bytes) -> SpoolRecord:
    """A frame's record, checked for what names a lake partition (tenant, clocks). Raises one
    of ``ROW_ERRORS``; then none of the record's events can be stored."""
    rec = record_decoder.decode(payload)
    # rejections of a request no tenant claims are kept under UNKNOWN_TENANT (they hold no event)
    if not is_tenant_id(rec.tenant) and not (rec.tenant == UNKNOWN_TENANT and not rec.body):
        raise ValueError(f"tenant {rec.tenant!r} is not a tenant id")
    _ms(rec.received_at, "received_at")
    _ms(rec.sent_at, "sent_at")
    return rec


def _canonical_ids(ids: list[str]) -> bool:
    """Whether every id of a record is a UUID in canonical spelling, with a handful of passes in
    C over the ids joined by commas (a regex match per id, or over the joined text, cost four
    times as much). The joined text's length says it holds n ids of 36 characters and n - 1
    joins; the joins and the UUIDs' dashes are where they must be and nowhere else (their
    counts), and every other character is a lower-case hex digit."""
    n = len(ids)
    if n == 0:
        return True
    joined = ",".join(ids)
    if len(joined) != 37 * n - 1 or not joined.isascii():  # (isascii: encode() cannot fail below)
        return False
    dashes = "-" * n
    return (joined.count("-") == 4 * n and joined.count(",") == n - 1 and joined[36::37] == "," * (n - 1)
            and joined[8::37] == dashes and joined[13::37] == dashes and joined[18::37] == dashes
            and joined[23::37] == dashes and not joined.encode().translate(None, _CANONICAL_CHARS))


def _lake_event(ev: StoredEvent, sent_at: int, skew: int, segment: str, rec_no: int, idx: int,
                check_id: bool) -> LakeEvent:
    # the per-event hot path of delivery and of the feed: checks inline, no call, no copy that
    # the usual event (a canonical event_id, props and context present or not) does not need.
    # check_id=False leaves a client's event_id as it came, for _canonical_ids to check.
    if ev.level not in LEVELS:
        raise ValueError(f"level {ev.level!r} is not one of {', '.join(LEVELS)}")
    client_ts = ev.client_ts
    if client_ts is None:
        client_ts = sent_at
    elif not 0 <= client_ts <= MAX_MS:
        raise ValueError(f"client_ts={client_ts} is out of range (0 to {MAX_MS} ms since the epoch)")
    event_ts = client_ts + skew  # clock-skew correction (module docstring)
    if not 0 <= event_ts <= MAX_MS:
        raise ValueError(f"event_ts={event_ts} (received_at - (sent_at - client_ts)) is out of range")
    event_id = ev.event_id
    if event_id is None or (check_id and _canonical(event_id) is None):
        event_id = lake_event_id(event_id, segment, rec_no, idx)
    props, context = ev.props, ev.context
    try:
        props = None if props == _NULL else str(props, "utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(props, "props", exc) from None
    try:
        context = None if context == _NULL else str(context, "utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(context, "context", exc) from None
    return _new(LakeEvent, (event_id, ev.level, ev.name, ev.anonymous_id, ev.user_id, ev.session_id, client_ts,
                            event_ts, ev.url, ev.referrer, ev.title, props, context, idx))


# (index in the batch, what was wrong, the bytes to show an excerpt of)
Undeliverable = tuple[int, str, bytes]


def record_events(rec: SpoolRecord, segment: str, rec_no: int) -> tuple[list[LakeEvent], list[Undeliverable]]:
    """The accepted events of a record (from ``read_record``) that the lake can store, in
    batch order, and the accepted ones it cannot, each with its error. Every accepted index
    is in exactly one of the two lists (an index accepted twice counts once; index -1 stands
    for a body that cannot be split into events at all)."""
    if not rec.body:
        return [], []
    body = rec.body
    stored: list[StoredEvent] | None = None
    try:  # every event decodes: the one-call path
        stored = _stored.decode(body).events
        raw: list[msgspec.Raw] | list[bytes] | None = None
        count = len(stored)
    except ROW_ERRORS:
        try:
            raw = _loose.decode(body).events
        except ROW_ERRORS as exc:
            raw = split_events(body)  # one bad event must not sink the others of its batch
            if raw is None:
                error = f"spool record {rec_no}, the request body cannot be split into events ({exc})"
                return [], [(idx, error, body) for idx in ([-1] if rec.accepted is None else dict.fromkeys(rec.accepted))]
        count = len(raw)
    events, failed = _checked(rec, segment, rec_no, stored, raw, count, check_id=False)
    if events and not _canonical_ids([ev[0] for ev in events]):  # rare: an id in another spelling, or no UUID
        events, failed = _checked(rec, segment, rec_no, stored, raw, count, check_id=True)
    return events, failed


def _checked(rec: SpoolRecord, segment: str, rec_no: int, stored: list[StoredEvent] | None,
             raw: list[msgspec.Raw] | list[bytes] | None, count: int,
             check_id: bool) -> tuple[list[LakeEvent], list[Undeliverable]]:
    """``record_events``' events of a decoded body: ``stored``, or else each of ``raw`` alone."""
    body = rec.body
    sent_at, skew = rec.sent_at, rec.received_at - rec.sent_at
    events: list[LakeEvent] = []
    failed: list[Undeliverable] = []
    for idx in range(count) if rec.accepted is None else dict.fromkeys(rec.accepted):
        if not 0 <= idx < count:
            failed.append((idx, f"spool record {rec_no}, events[{idx}]: accepted, but the batch has {count} event(s)", body))
            continue
        try:
            ev = stored[idx] if stored is not None else _event.decode(raw[idx])
            events.append(_lake_event(ev, sent_at, skew, segment, rec_no, idx, check_id))
        except ROW_ERRORS as exc:
            if raw is None:
                raw = _loose.decode(body).events  # decodes: the whole body did
            failed.append((idx, f"spool record {rec_no}, events[{idx}]: {exc}", bytes(raw[idx])))
    return events, failed


def event_bytes(body: bytes, idx: int) -> bytes:
    """The bytes of event ``idx`` of a body ``record_events`` split, for an excerpt."""
    try:
        raw = _loose.decode(body).events
    except ROW_ERRORS:
        raw = split_events(body) or []
    return bytes(raw[idx]) if 0 <= idx < len(raw) else body
