"""The usual batch in one pass: ``validate``'s checks at C speed, for a body they all pass.

Invariant: for every body, ``decode`` and ``check`` answer exactly what ``validate``'s
``decode_envelope`` and ``TenantRules.check_batch`` answer (the same events, rejections and
spooled body). They take a body only when a cheap test shows that the general path would find
nothing wrong in it, and hand every other body to the general path, which then says what is
wrong as it always did. tests/ingest/collector/test_fast_path.py holds this with Hypothesis.

Why: decoding and checking cost the general path about 2 us an event (a pattern match per name
inside the typed decode, a decode and a copy per ``props``); the usual batch of ten valid events
pays one typed decode without the pattern, one set lookup per name, and one decode of all
``props`` together: 1.3 us an event (docs/performance.md, "Ingest").
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from beaconlake.ingest.collector.validate import Checked, Decoded, TenantRules, decode_envelope
from beaconlake.types import CONTEXT_MAX_BYTES, EPOCH_MS_MAX, EPOCH_MS_MIN, NAME_MAX, NAME_PATTERN, ClientEvent, EpochMs


class _Event(ClientEvent):
    """``ClientEvent`` with its name's pattern left to ``_name_ok`` (msgspec runs the pattern in
    Python's ``re`` for every event: about 0.45 us each, half of the typed decode)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_MAX)]


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    events: list[_Event]
    sent_at: EpochMs | None = None
    k: str | None = None


_decoder = msgspec.json.Decoder(_Envelope)
_values = msgspec.json.Decoder(list[Any])
_NAME = re.compile(NAME_PATTERN)  # applied with search, as msgspec applies a Meta pattern
_names: set[str] = set()  # names that matched: a site sends a few dozen
MAX_NAMES = 4096  # past this many, names are matched each time (they are the client's to choose)
NULL = msgspec.Raw(b"null")


def _name_ok(name: str) -> bool:
    if name in _names:
        return True
    if _NAME.search(name) is None:
        return False
    if len(_names) < MAX_NAMES:
        _names.add(name)
    return True


def decode(body: bytes, max_depth: int) -> Decoded:
    """``decode_envelope(body, max_depth)``, at C speed when every event is well-formed."""
    try:
        env = _decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return decode_envelope(body, max_depth)  # what is wrong is the general path's to say
    for ev in env.events:
        if not _name_ok(ev.name):
            return decode_envelope(body, max_depth)
    return Decoded(body, env.sent_at, env.k, typed=env.events)  # type: ignore[arg-type]


def check(rules: TenantRules, batch: Decoded, skew_ms: int = 0) -> Checked:
    """``rules.check_batch(batch, skew_ms)``, at C speed when every event passes."""
    typed = batch.typed
    if typed is None or batch.notes:
        return rules.check_batch(batch, skew_ms)
    try:  # every props at once: one decode says each one is valid JSON with valid strings
        values = _values.decode(b"[" + b",".join([ev.props for ev in typed]) + b"]")
    except (msgspec.DecodeError, RecursionError):
        return rules.check_batch(batch, skew_ms)
    short, schemas = rules.short_json_bytes, rules.schemas
    low, high = EPOCH_MS_MIN - skew_ms, EPOCH_MS_MAX - skew_ms
    for i, ev in enumerate(typed):
        ts, value, props = ev.client_ts, values[i], ev.props
        if value is None and props == NULL:
            value = {}
        # A short object can be neither too deep nor hold an integer past float64 (see
        # TenantRules._check_fields); anything else is the general path's.
        elif type(value) is not dict or len(props) > short:
            return rules.check_batch(batch, skew_ms)
        if ts is not None and not low <= ts <= high:
            return rules.check_batch(batch, skew_ms)
        if ev.context != NULL:
            problem, _ = rules._object(i, "context", bytes(ev.context), CONTEXT_MAX_BYTES)  # the general check itself
            if problem is not None:
                return rules.check_batch(batch, skew_ms)
        if schemas:
            validator = schemas.get((ev.level, ev.name))
            if validator is not None and not _passes(validator, value):
                return rules.check_batch(batch, skew_ms)
    return Checked(typed, [], batch.body)  # type: ignore[arg-type]


def _passes(validator: Any, value: Any) -> bool:
    try:
        validator(value)
    except Exception:  # noqa: BLE001 - a schema failure, or whatever a hostile value makes it raise: the general path says which
        return False
    return True
