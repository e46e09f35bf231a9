"""Sequence steps and predicates, with the browser tracker's semantics (docs/tracker.md).

A field is ``name``, ``level``, ``url``, ``title``, ``referrer``, ``user_id``, ``session_id`` or
``props.<key>`` (dots for nested keys); absent or null means it does not exist, and then every
op but ``ne`` is false. Equality is JSON equality: ``1`` equals ``1.0`` but not ``true``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from beaconlake.realtime.settings import Predicate, SequenceNegation, SequenceStep

TOP_FIELDS = ("name", "level", "url", "title", "referrer", "user_id", "session_id")


def json_eq(a: Any, b: Any) -> bool:
    ta = type(a)
    if ta is type(b) and ta is not list and ta is not dict:  # the usual case: str == str
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(json_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_eq(a[k], b[k]) for k in a)
    return a == b


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def test(v: Any, p: Predicate) -> bool:
    op, x = p.op, p.value
    if op == "exists":
        return v is not None
    if op == "ne":
        return not json_eq(v, x)
    if v is None:
        return False
    if op == "eq":
        return json_eq(v, x)
    if op == "in":
        return any(json_eq(v, y) for y in (x if isinstance(x, list) else [x]))
    if op == "prefix":
        return isinstance(v, str) and isinstance(x, str) and v.startswith(x)
    if not (_number(v) and _number(x)):
        return False
    if op == "gte":
        return v >= x
    if op == "gt":
        return v > x
    if op == "lte":
        return v <= x
    return v < x


_NUMBER_TYPES = (int, float)  # exact types: JSON decoding makes no subclasses, and bool is not a number here


def compile_test(p: Predicate) -> Callable[[Any], bool]:
    """``test`` for one predicate as a function of the value: the comparisons with a number and
    ``prefix`` skip the dispatch on the op, which matters on the detector's per-event path."""
    op, x = p.op, p.value
    if op in ("gte", "gt", "lte", "lt") and _number(x):
        if op == "gte":
            return lambda v: type(v) in _NUMBER_TYPES and v >= x
        if op == "gt":
            return lambda v: type(v) in _NUMBER_TYPES and v > x
        if op == "lte":
            return lambda v: type(v) in _NUMBER_TYPES and v <= x
        return lambda v: type(v) in _NUMBER_TYPES and v < x
    if op == "prefix" and isinstance(x, str):
        return lambda v: type(v) is str and v.startswith(x)
    return lambda v: test(v, p)


def fields_read(step: SequenceStep | SequenceNegation) -> set[str]:
    out = {p.field for p in step.where}
    out.update(getattr(step, "same", []))
    return out


def compile_fields(wanted: set[str]) -> list[tuple[str, tuple[str, ...] | None]]:
    """(field, its path under props, or None for a top-level field), split once. Any other
    field never exists, so it is not read at all."""
    return [(f, tuple(f[6:].split(".")) if f.startswith("props.") else None)
            for f in sorted(wanted) if f.startswith("props.") or f in TOP_FIELDS]


def extract(ev: Any, props: Any, wanted: list[tuple[str, tuple[str, ...] | None]]) -> dict[str, Any]:
    """What the detector keeps of an event: only the fields some definition reads."""
    out = {}
    for f, path in wanted:
        if path is None:
            v = getattr(ev, f, None)
        else:
            v = props
            for part in path:
                if not isinstance(v, dict):
                    v = None
                    break
                v = v.get(part)
        if v is not None:
            out[f] = v
    return out

