"""Config of the realtime stage: ``[realtime]``, and the sequences a tenant defines (``[[tenants.sequences]]``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from beaconlake.sections import PositiveFloat, PositiveInt, Section
from beaconlake.types import Name


class RealtimeSettings(Section):
    """Mid-level statistics in the collector workers; sequence detection in the deliverer."""

    enabled: bool = True
    # A minute window [s, s+60) closes at s + 60 + allowed_lateness_secs on the collector's clock.
    allowed_lateness_secs: Annotated[float, msgspec.Meta(ge=0)] = 120.0
    retention_hours: PositiveInt = 48
    # Events whose page path is a statistics group (besides the all-paths total).
    path_events: list[Name] = msgspec.field(default_factory=lambda: ["page_view", "page_leave"])
    max_paths_per_window: PositiveInt = 1000
    max_numeric_props: PositiveInt = 16
    # How long a server-detected match waits for the browser's report of the same match.
    browser_grace_secs: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    max_events_per_person: Annotated[int, msgspec.Meta(ge=16, le=10_000)] = 200
    # Where server-side sequence detection reads events (docs/realtime.md, "Sequences across
    # nodes"). "spool": each node's deliverer, over that node's events only (one machine, lowest
    # lag). "lake": one detector on the active jobs node over the raw lake files every node
    # delivered, in event-time order (required when several nodes collect).
    sequences_from: Literal["spool", "lake"] = "spool"
    # "lake": how long after an event's time its raw file may reach the lake and still be
    # detected (delivery interval plus margin); later events are counted and left out.
    lake_lateness_secs: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 30.0
    # "lake": how often the detector lists new raw files.
    lake_poll_interval_secs: Annotated[float, msgspec.Meta(gt=0, le=3_600)] = 5.0


class Predicate(Section):
    """A condition on one field of an event: ``props.category``, ``url``, ``title``, ``level``..."""

    field: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    op: Literal["eq", "ne", "in", "prefix", "gt", "gte", "lt", "lte", "exists"]
    value: Any = None


class SequenceStep(Section):
    name: Name
    where: list[Predicate] = []
    # Fields (same syntax as Predicate.field) whose value must equal the previous step's.
    same: list[str] = []


class SequenceNegation(Section):
    name: Name
    where: list[Predicate] = []
    within_secs: PositiveFloat | None = None


class SequenceDefinition(Section):
    """An analyst's high-level event, detected in the browser and on the server alike."""

    name: Name
    steps: Annotated[list[SequenceStep], msgspec.Meta(min_length=1, max_length=16)]
    within_secs: PositiveFloat
    not_followed_by: SequenceNegation | None = None
