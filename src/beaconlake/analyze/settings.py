"""Config section of the analyze stage: ``[analyze]`` (``[profiles]`` is the profile store's own:
``beaconlake.backends.profiles.settings``).

Limits are checked in ``__post_init__`` so a bad value is reported with the key, the value and
the limit ("analyze.propensity_horizon_days = 0: must be between 1 and 365 days").
"""

from __future__ import annotations

import re

import msgspec

from beaconlake.sections import Section, check_range

_NAME = re.compile(r"^[a-z0-9_.:-]{1,64}$")
_PROP = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def _check_names(key: str, names: list[str]) -> None:
    for n in names:
        if not _NAME.match(n):
            raise ValueError(f"{key}: {n!r} is not an event name (1-64 characters of a-z 0-9 _ . : -)")


def _check_prop(key: str, prop: str) -> None:
    if not _PROP.match(prop):
        raise ValueError(f"{key} = {prop!r}: a top-level property name of 1-64 letters, digits or '_'")


class CategoryRule(Section):
    """Page views whose path starts with ``prefix`` count for ``category``; the first matching rule wins."""

    prefix: str
    category: str

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/"):
            raise ValueError(f"analyze.category_rules: prefix = {self.prefix!r} must start with '/'")
        if not _NAME.match(self.category):
            raise ValueError(f"analyze.category_rules: category = {self.category!r}: 1-64 characters of a-z 0-9 _ . : -")


class TenantGoal(Section):
    """A tenant's own conversion goal, overriding ``[analyze]``'s for that tenant."""

    tenant: str
    goal_events: list[str] | None = None
    value_property: str | None = None
    propensity_horizon_days: int | None = None

    def __post_init__(self) -> None:
        if self.goal_events is not None:
            _check_names(f"analyze.tenants.{self.tenant}.goal_events", self.goal_events)
            if not self.goal_events:
                raise ValueError(f"analyze.tenants.{self.tenant}.goal_events is empty: name at least one event")
        if self.value_property is not None:
            _check_prop(f"analyze.tenants.{self.tenant}.value_property", self.value_property)
        if self.propensity_horizon_days is not None:
            check_range(f"analyze.tenants.{self.tenant}.propensity_horizon_days", self.propensity_horizon_days, 1, 365, "days")


class Goal(msgspec.Struct, frozen=True):
    """A tenant's resolved goal."""

    events: tuple[str, ...]
    value_property: str
    horizon_days: int


class AnalyzeSettings(Section):
    # Events that count as a conversion (the propensity model's goal, the conversion features).
    goal_events: list[str] = msgspec.field(default_factory=lambda: ["purchase"])
    # Property of a goal event holding its monetary value (a number), e.g. purchase.props.value.
    value_property: str = "value"
    # Propensity: the probability of a goal event in the next this many days.
    propensity_horizon_days: int = 7
    # Path prefixes mapped to interest categories; paths no rule matches use their first segment.
    category_rules: list[CategoryRule] = []
    # First path segments that are not content categories (home, search, checkout...).
    ignore_path_segments: list[str] = msgspec.field(
        default_factory=lambda: ["", "search", "cart", "checkout", "account", "login", "about", "help"])
    # Categories whose pages signal a hunt for discounts (price sensitivity).
    sale_categories: list[str] = msgspec.field(default_factory=lambda: ["sale", "outlet", "deals"])
    # Segments: k is chosen by silhouette among 2..max_segments.
    max_segments: int = 8
    # Fewer people than this in a tenant: no segments and no propensity model (too little to learn from).
    min_people: int = 20
    # Incremental runs reuse the segment model until the tenant has grown by this fraction since its fit.
    refit_growth: float = 0.2
    interests_top: int = 5
    tenants: list[TenantGoal] = []

    def __post_init__(self) -> None:
        _check_names("analyze.goal_events", self.goal_events)
        if not self.goal_events:
            raise ValueError("analyze.goal_events is empty: name at least one event, e.g. [\"purchase\"]")
        _check_prop("analyze.value_property", self.value_property)
        check_range("analyze.propensity_horizon_days", self.propensity_horizon_days, 1, 365, "days")
        check_range("analyze.max_segments", self.max_segments, 2, 30, "segments")
        check_range("analyze.min_people", self.min_people, 4, 1_000_000, "people")
        check_range("analyze.refit_growth", self.refit_growth, 0.0, 100.0, "(fraction)")
        check_range("analyze.interests_top", self.interests_top, 1, 50, "categories")
        seen = set()
        for t in self.tenants:
            if t.tenant in seen:
                raise ValueError(f"analyze.tenants: tenant {t.tenant!r} is listed twice")
            seen.add(t.tenant)

    def goal(self, tenant: str) -> Goal:
        own = next((t for t in self.tenants if t.tenant == tenant), None)
        return Goal(
            events=tuple(own.goal_events if own and own.goal_events else self.goal_events),
            value_property=own.value_property if own and own.value_property else self.value_property,
            horizon_days=own.propensity_horizon_days if own and own.propensity_horizon_days else self.propensity_horizon_days,
        )
