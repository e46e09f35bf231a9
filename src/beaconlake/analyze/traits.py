"""Behavioural traits: 0-1 scores with written-down formulas over a person's features.

They stand in for the talk's psychographic profile, and they describe behaviour on this site
only: what a person did, not who they are. Each score comes with the features it was computed
from, so an analyst can see why. A score is ``None`` when the person has not done what the trait
is about (decisiveness without a conversion). docs/analyze.md explains each one.
"""

from __future__ import annotations

import math
from typing import Any

from beaconlake.backends.profiles.base import TRAITS

# Scales of the formulas: the value at which a term saturates, or its decay constant.
ENGAGED_SECS_PER_SESSION_FULL = 300.0  # 5 engaged minutes per visit count as fully engaged
STEPS_DECAY = 5.0  # page views before converting, beyond the first
MINS_DECAY = 10.0  # minutes from the session's first page view to the conversion
SESSIONS_PER_WEEK_FULL = 3.0
CONVERSIONS_FULL = 3.0
SECS_PER_PAGE_DELIBERATE = 60.0  # a minute per page is considered deliberate, not impulsive


def _clip(x: float) -> float:
    return max(0.0, min(1.0, x))


def _num(f: dict[str, Any], name: str) -> float:
    v = f.get(name)
    return 0.0 if v is None else float(v)


def engagement(f: dict[str, Any]) -> tuple[float | None, tuple[str, ...]]:
    """mean(min(1, engaged_secs_per_session / 300), avg_scroll_pct / 100, 1 - bounce_rate)"""
    used = ("engaged_secs_per_session", "avg_scroll_pct", "bounce_rate")
    terms = (min(1.0, _num(f, used[0]) / ENGAGED_SECS_PER_SESSION_FULL), _num(f, used[1]) / 100.0, 1.0 - _num(f, used[2]))
    return _clip(sum(terms) / 3), used


def decisiveness(f: dict[str, Any]) -> tuple[float | None, tuple[str, ...]]:
    """0.5 * exp(-(steps_to_convert - 1) / 5) + 0.5 * exp(-mins_to_convert / 10); None without a conversion"""
    used = ("steps_to_convert", "mins_to_convert")
    if f.get("steps_to_convert") is None or f.get("mins_to_convert") is None:
        return None, used
    steps = max(0.0, float(f["steps_to_convert"]) - 1.0)
    return _clip(0.5 * math.exp(-steps / STEPS_DECAY) + 0.5 * math.exp(-max(0.0, float(f["mins_to_convert"])) / MINS_DECAY)), used


def exploration(f: dict[str, Any]) -> tuple[float | None, tuple[str, ...]]:
    """category_entropy: Shannon entropy of engaged time over categories / ln(categories on the site)"""
    used = ("category_entropy", "categories_viewed")
    return _clip(_num(f, "category_entropy")), used


def price_sensitivity(f: dict[str, Any]) -> tuple[float | None, tuple[str, ...]]:
    """sale_share: the share of engaged time spent on sale categories"""
    used = ("sale_share",)
    return _clip(_num(f, "sale_share")), used


def loyalty(f: dict[str, Any]) -> tuple[float | None, tuple[str, ...]]:
    """mean(min(1, sessions_per_week / 3), active_week_share, min(1, conversions / 3))"""
    used = ("sessions_per_week", "active_week_share", "conversions")
    terms = (min(1.0, _num(f, used[0]) / SESSIONS_PER_WEEK_FULL), _num(f, used[1]), min(1.0, _num(f, used[2]) / CONVERSIONS_FULL))
    return _clip(sum(terms) / 3), used


def impulsiveness(f: dict[str, Any]) -> tuple[float | None, tuple[str, ...]]:
    """min(1, cart_adds_per_product_view) * (1 - min(1, engaged_secs_per_page / 60))"""
    used = ("cart_adds_per_product_view", "engaged_secs_per_page")
    rate = min(1.0, _num(f, used[0]))
    return _clip(rate * (1.0 - min(1.0, _num(f, used[1]) / SECS_PER_PAGE_DELIBERATE))), used


FORMULAS = {"engagement": engagement, "decisiveness": decisiveness, "exploration": exploration,
            "price_sensitivity": price_sensitivity, "loyalty": loyalty, "impulsiveness": impulsiveness}
assert tuple(FORMULAS) == TRAITS


def traits(features: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{trait: {"score": 0..1 or None, "features": {name: value}}}`` for one person."""
    out = {}
    for name, formula in FORMULAS.items():
        score, used = formula(features)
        out[name] = {"score": None if score is None else round(score, 4), "features": {u: features.get(u) for u in used}}
    return out
