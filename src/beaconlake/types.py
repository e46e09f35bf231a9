"""The canonical event and the records every stage shares (DESIGN.md, "The canonical event").

Three shapes of one event:

* ``ClientEvent``: what a client sends, validated at the collector's boundary.
* ``SpoolRecord``: what the collector makes durable for one request: the server-side
  enrichment once per request, the request body as it arrived (decompressed) when every
  event was accepted, else an envelope of the accepted events only (so no byte the door
  refused ever reaches the lake's readers), and the rejected ones with their reasons.
* ``RAW_SCHEMA``: the Arrow schema of the raw lake, one row per event.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec
import pyarrow as pa

Level = Literal["low", "mid", "high"]
LEVELS: tuple[str, ...] = ("low", "mid", "high")

NAME_MAX = 64
NAME_PATTERN = r"^[a-z0-9_.:-]+\Z"  # \Z, not $: "$" also matches before a trailing newline
ID_MAX = 128
TEXT_MAX = 2048
CONTEXT_MAX_BYTES = 8 * 1024
# The highest collector.max_json_depth allowed: a body is then at most this + 3 levels deep
# (envelope, events, event), well inside the recursion limit of every Python JSON decoder.
MAX_JSON_DEPTH_CEILING = 256

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX)]
Text = Annotated[str, msgspec.Meta(max_length=TEXT_MAX)]
# ms since the epoch; bounded so that a seconds-or-microseconds mix-up is caught at the door.
EPOCH_MS_MIN, EPOCH_MS_MAX = 946_684_800_000, 4_102_444_800_000  # 2000-01-01, 2100-01-01
EpochMs = Annotated[int, msgspec.Meta(ge=EPOCH_MS_MIN, le=EPOCH_MS_MAX)]


class ClientEvent(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One event as a client sends it (the tenant comes from the write key, never the body)."""

    level: Level
    name: Name
    anonymous_id: Id
    # Parsed by msgspec's native UUID decoder (faster than a pattern); the lake stores the
    # canonical lowercase text, so "ABC…" and "abc…" dedupe as one event.
    event_id: uuid.UUID | None = None
    user_id: Id | None = None
    session_id: Id | None = None
    client_ts: EpochMs | None = None
    url: Text | None = None
    referrer: Text | None = None
    title: Text | None = None
    # Kept as the client's JSON text: the lake stores it as text and only tenants with a
    # registered JSON Schema pay for decoding it.
    props: msgspec.Raw = msgspec.Raw(b"null")
    context: msgspec.Raw = msgspec.Raw(b"null")


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /v1/events``. Events stay raw so one bad event cannot sink the batch."""

    events: list[msgspec.Raw]
    sent_at: EpochMs | None = None
    k: str | None = None


class TypedEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    """The same body decoded in one pass: the fast path for the usual batch of valid events."""

    events: list[ClientEvent]
    sent_at: EpochMs | None = None
    k: str | None = None


class UserAgent(msgspec.Struct, array_like=True, frozen=True):
    browser: str | None = None
    browser_version: str | None = None
    os: str | None = None
    os_version: str | None = None
    device: str | None = None
    is_bot: bool = False


class Rejection(msgspec.Struct, array_like=True):
    index: int  # position in the batch, -1 when the whole request was refused
    reason: str  # short machine-readable code: "invalid_event", "schema", "invalid_json", ...
    error: str  # what was wrong, with the value and the limit
    excerpt: str  # the start of what was sent, for the analyst who reads lake/rejected


class Client(msgspec.Struct, array_like=True):
    """The end user's agent and address for one event, when the event carries them itself
    (``context.userAgent`` / ``context.ip``: a server or a mobile SDK sending on the user's
    behalf); they, not the sending server's, are what the lake records for that event."""

    ip: str | None  # anonymised unless collector.anonymize_ip = false
    user_agent: str | None
    ua: UserAgent


# How an event arrived: the browser tracker, another client of /v1/events, the Segment or the
# Snowplow door, or made by beaconlake itself (a server-detected high-level event).
SOURCES = ("beaconlake.js", "http", "segment", "snowplow", "server")


class SpoolRecord(msgspec.Struct, array_like=True):
    """One acknowledged request, as it sits in a spool segment. The last two fields are optional
    so that records written before they existed still decode."""

    tenant: str
    received_at: int
    sent_at: int
    ip: str | None
    user_agent: str | None
    ua: UserAgent
    body: bytes  # an Envelope: the request body as received (after gzip), or the accepted events only
    accepted: list[int] | None  # indexes of the accepted events in body; None: all of them
    rejected: list[Rejection]
    source: str | None = None  # the protocol it came in (SOURCES); None: beaconlake's own /v1/events
    clients: dict[int, Client] | None = None  # per event of body (by index): its own end user's agent and address


RAW_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("tenant", pa.string(), nullable=False),
        pa.field("level", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("anonymous_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("client_ts", pa.int64(), nullable=False),
        pa.field("sent_at", pa.int64(), nullable=False),
        pa.field("received_at", pa.int64(), nullable=False),
        pa.field("event_ts", pa.int64(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("referrer", pa.string()),
        pa.field("title", pa.string()),
        pa.field("props", pa.string()),  # JSON object text
        pa.field("context", pa.string()),  # client context, JSON object text
        pa.field("ip", pa.string()),  # anonymised unless configured otherwise
        pa.field("user_agent", pa.string()),
        pa.field("ua_browser", pa.string()),
        pa.field("ua_browser_version", pa.string()),
        pa.field("ua_os", pa.string()),
        pa.field("ua_os_version", pa.string()),
        pa.field("ua_device", pa.string()),
        pa.field("is_bot", pa.bool_(), nullable=False),
        pa.field("segment", pa.string(), nullable=False),  # spool segment it came from: lineage
        pa.field("source", pa.string()),  # SOURCES; null in files written before the column existed
    ]
)

REJECTED_SCHEMA = pa.schema(
    [
        pa.field("tenant", pa.string(), nullable=False),
        pa.field("received_at", pa.int64(), nullable=False),
        pa.field("index", pa.int32(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("error", pa.string(), nullable=False),
        pa.field("excerpt", pa.string(), nullable=False),
        pa.field("ip", pa.string()),
        pa.field("user_agent", pa.string()),
        pa.field("segment", pa.string(), nullable=False),
    ]
)
