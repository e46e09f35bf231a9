"""The baked tables: their columns (with what each means), partitioning and Iceberg schemas.

Every column is optional in Iceberg: the engines write Parquet with nullable columns, and
``add_files`` accepts a file only when its schema fits the table's.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DateType,
    DoubleType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

TS = pa.timestamp("us", tz="UTC")
S, I64, I32, F64, B, D = pa.string(), pa.int64(), pa.int32(), pa.float64(), pa.bool_(), pa.date32()

EVENT_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("tenant", S, "tenant id"),
    ("event_id", S, "the client's UUID; unique per tenant in this table"),
    ("level", S, "low / mid / high"),
    ("name", S, "event name"),
    ("event_ts", TS, "when it happened (clock-skew corrected)"),
    ("event_date", D, "UTC date of event_ts (the partition day)"),
    ("anonymous_id", S, "the browser's id"),
    ("user_id", S, "the user id the event carried, if any"),
    ("stitched_user", S, "user_id, else the user the anonymous id is identified as (see identities)"),
    ("session_id", S, "authoritative session, computed by convert"),
    ("session_index", I32, "1 for the anonymous id's first session, 2 for the next..."),
    ("client_session_id", S, "the session id the client sent"),
    ("url", S, ""),
    ("referrer", S, ""),
    ("title", S, ""),
    ("props", S, "event properties, JSON object text"),
    ("context", S, "client context, JSON object text"),
    ("client_ts", TS, "the client's clock"),
    ("sent_at", TS, "the client's clock when sent"),
    ("received_at", TS, "the collector's clock"),
    ("ip", S, "anonymised unless configured otherwise"),
    ("user_agent", S, ""),
    ("ua_browser", S, ""),
    ("ua_browser_version", S, ""),
    ("ua_os", S, ""),
    ("ua_os_version", S, ""),
    ("ua_device", S, ""),
    ("is_bot", B, ""),
    ("segment", S, "spool segment the event came from (lineage)"),
    ("source", S, "how it arrived: beaconlake.js, http, segment, snowplow or server (NULL before the column existed)"),
]

SESSION_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("tenant", S, ""),
    ("session_id", S, ""),
    ("anonymous_id", S, ""),
    ("stitched_user", S, "the user the anonymous id is identified as, when known"),
    ("session_index", I32, ""),
    ("start_ts", TS, "first event"),
    ("end_ts", TS, "last event"),
    ("session_date", D, "UTC date of start_ts (the partition day)"),
    ("duration_ms", I64, "end_ts - start_ts"),
    ("events", I32, ""),
    ("low_events", I32, ""),
    ("mid_events", I32, ""),
    ("high_events", I32, ""),
    ("page_views", I32, ""),
    ("engaged_ms", I64, "sum of the page views' engaged time"),
    ("landing_url", S, "URL of the first page view; NULL in a session without page views"),
    ("landing_path", S, ""),
    ("exit_url", S, "last page view"),
    ("exit_path", S, ""),
    ("referrer", S, "referrer of the landing page view"),
    ("referrer_host", S, ""),
    ("utm_source", S, "from the landing URL"),
    ("utm_medium", S, ""),
    ("utm_campaign", S, ""),
    ("utm_term", S, ""),
    ("utm_content", S, ""),
    ("device", S, "ua_device of the session's first event"),
    ("browser", S, ""),
    ("os", S, ""),
    ("country", S, "context.country of the landing page view, when the client set it; no GeoIP lookup"),
    ("locale", S, "context.locale of the landing page view"),
    ("timezone", S, "context.tz of the landing page view"),
    ("bounced", B, "at most one page view and under 10 s engaged"),
    ("is_bot", B, "any event of the session came from a bot user agent"),
    ("split", B, "activity went on past max_session_hours and was cut"),
]

PAGEVIEW_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("tenant", S, ""),
    ("page_view_id", S, ""),
    ("session_id", S, "the session of the page_view event"),
    ("anonymous_id", S, ""),
    ("stitched_user", S, ""),
    ("view_index", I32, "1 for the session's landing page"),
    ("view_ts", TS, "the page_view event"),
    ("view_date", D, "UTC date of view_ts (the partition day)"),
    ("url", S, ""),
    ("path", S, ""),
    ("title", S, ""),
    ("referrer", S, ""),
    ("engaged_ms", I64, "from page_leave, else to the last Snowplow page_ping; NULL when the page reported neither"),
    ("max_scroll_pct", I32, "deepest of page_leave.max_scroll_pct, scroll.depth_pct and page_ping.depth_pct"),
    ("time_to_first_interaction_ms", I64, "to the first click, touch, scroll, link click or form submit"),
    ("clicks", I32, ""),
    ("rage_clicks", I32, ""),
    ("duration_ms", I64, "to its last event"),
    ("left_page", B, "a page_leave was received"),
]

HIGH_LEVEL_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("tenant", S, ""),
    ("event_id", S, ""),
    ("name", S, "the sequence definition's name"),
    ("event_ts", TS, ""),
    ("event_date", D, ""),
    ("anonymous_id", S, ""),
    ("stitched_user", S, ""),
    ("session_id", S, ""),
    ("session_index", I32, ""),
    ("definition", S, "props.definition"),
    ("source", S, "props.source: browser or server"),
    ("matched_event_ids", pa.list_(S), "props.matched_event_ids"),
    ("url", S, ""),
    ("props", S, ""),
]

IDENTITY_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("tenant", S, ""),
    ("anonymous_id", S, ""),
    ("user_id", S, "the latest user id seen with this anonymous id"),
    ("first_identified_ts", TS, "first event that carried a user id"),
    ("identified_ts", TS, "latest event that carried user_id"),
]

CONVERTED_FILE_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("raw_key", S, "key of the raw file under the lake root"),
    ("size_bytes", I64, ""),
    ("tenant", S, ""),
    ("day", D, ""),
    ("run_id", S, ""),
    ("converted_ts", TS, ""),
]


def arrow_schema(columns: list[tuple[str, pa.DataType, str]]) -> pa.Schema:
    return pa.schema([pa.field(name, t) for name, t, _doc in columns])


@dataclass(frozen=True)
class TableDef:
    name: str
    columns: list[tuple[str, pa.DataType, str]]
    day_column: str | None  # partitioned by tenant and day(this timestamp); None: by tenant only
    date_column: str | None  # the DATE copy of it that engines partition their output folders by

    @property
    def arrow(self) -> pa.Schema:
        return arrow_schema(self.columns)


EVENTS = TableDef("events", EVENT_COLUMNS, "event_ts", "event_date")
SESSIONS = TableDef("sessions", SESSION_COLUMNS, "start_ts", "session_date")
PAGEVIEWS = TableDef("pageviews", PAGEVIEW_COLUMNS, "view_ts", "view_date")
HIGH_LEVEL_EVENTS = TableDef("high_level_events", HIGH_LEVEL_COLUMNS, "event_ts", "event_date")
IDENTITIES = TableDef("identities", IDENTITY_COLUMNS, None, None)
CONVERTED_FILES = TableDef("converted_files", CONVERTED_FILE_COLUMNS, None, None)

BAKED = (EVENTS, SESSIONS, PAGEVIEWS, HIGH_LEVEL_EVENTS)
ALL = (*BAKED, IDENTITIES, CONVERTED_FILES)


def iceberg_type(t: pa.DataType, next_id) -> IcebergType:
    if pa.types.is_list(t):
        return ListType(next_id(), iceberg_type(t.value_type, next_id), element_required=False)
    if pa.types.is_timestamp(t):
        return TimestamptzType()
    simple = {S: StringType(), I64: LongType(), I32: IntegerType(), F64: DoubleType(), B: BooleanType(), D: DateType()}
    return simple[t]


def iceberg_schema(schema: pa.Schema) -> Schema:
    counter = iter(range(len(schema) + 1, 10_000))
    fields = [
        NestedField(i + 1, f.name, iceberg_type(f.type, lambda: next(counter)), required=False)
        for i, f in enumerate(schema)
    ]
    return Schema(*fields)


def partition_spec(table: TableDef, schema: Schema) -> PartitionSpec:
    fields = [PartitionField(schema.find_field("tenant").field_id, 1000, IdentityTransform(), "tenant")]
    if table.day_column:
        source = schema.find_field(table.day_column).field_id
        fields.append(PartitionField(source, 1001, DayTransform(), f"{table.day_column}_day"))
    if table is CONVERTED_FILES:
        return PartitionSpec()
    return PartitionSpec(*fields)
