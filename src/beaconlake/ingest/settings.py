"""Config of the ingest stage: ``[collector]``, ``[spool]`` and ``[delivery]``."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from beaconlake.sections import PositiveFloat, PositiveInt, Section
from beaconlake.types import MAX_JSON_DEPTH_CEILING


# What collector.snowplow_path_prefix may be: "" or /segment[/segment...], no trailing slash.
PATH_PREFIX = r"(/[A-Za-z0-9._~-]+)*"


class CollectorSettings(Section):
    max_body_bytes: PositiveInt = 1024 * 1024
    max_batch_events: PositiveInt = 500
    max_props_bytes: PositiveInt = 16 * 1024
    # Levels of nesting in an event's props or context ({"a": {"b": 1}} is 2). Capped so that
    # every accepted event decodes within Python's recursion limit downstream.
    max_json_depth: Annotated[int, msgspec.Meta(ge=1, le=MAX_JSON_DEPTH_CEILING)] = 32
    anonymize_ip: bool = True
    # Put in front of Snowplow's default paths (/com.snowplowanalytics.snowplow/tp2, /i), as a
    # tracker configured with a custom post path or a collector behind a path-routing proxy needs.
    snowplow_path_prefix: Annotated[str, msgspec.Meta(max_length=256)] = ""  # checked by config: PATH_PREFIX


class SpoolSettings(Section):
    durability: Literal["fsync", "os"] = "fsync"
    max_segment_bytes: PositiveInt = 64 * 1024 * 1024
    flush_interval_secs: PositiveFloat = 10.0
    max_undelivered_bytes: PositiveInt = 1024 * 1024 * 1024
    min_free_disk_bytes: Annotated[int, msgspec.Meta(ge=0)] = 512 * 1024 * 1024
    retry_after_secs: PositiveInt = 5


class DeliverySettings(Section):
    poll_interval_secs: PositiveFloat = 0.5
    max_retry_secs: PositiveFloat = 60.0
    # On shutdown, how long to keep retrying delivery of what the spool holds before exiting.
    drain_timeout_secs: PositiveFloat = 60.0
    # 1: on tracker batches it wrote 10 % faster than 3 and the files were no larger (docs/performance.md)
    zstd_level: Annotated[int, msgspec.Meta(ge=1, le=22)] = 1
