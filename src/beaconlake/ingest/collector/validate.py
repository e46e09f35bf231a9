"""Validation of a batch: the envelope, each event's types and limits, the tenant's schemas.

The invariant: whatever the door accepts, every later stage can read. An accepted event's strings
are valid UTF-8 without lone surrogates (msgspec checks the typed fields); its props and context
are JSON objects within their size, nesting depth (``collector.max_json_depth``) and number range
(float64), that decode with msgspec, and its props pass the tenant's JSON Schema for its (level,
name), if there is one. Each check answers with a rejection, never an exception.

One bad event never sinks its batch: each event is accepted or rejected with a reason that names
the field, the value and the limit, and a bad string or a too-deep value inside one event costs
that event only (``jsonscan`` sets them aside when they would make the whole body unparseable).
Only a body whose structure is not JSON, or whose envelope is wrong, is refused as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema
import msgspec

from beaconlake.config import CollectorSettings, TenantSettings
from beaconlake.errors import ConfigError
from beaconlake.ingest.collector import jsonscan
from beaconlake.origins import canonical_origin
from beaconlake.types import (
    CONTEXT_MAX_BYTES,
    EPOCH_MS_MAX,
    EPOCH_MS_MIN,
    ClientEvent,
    Envelope,
    Rejection,
    TypedEnvelope,
)

EXCERPT_BYTES = 512
BODY_LEVELS = 3  # envelope, events array, event: the levels above an event's props
_PATH_RE = re.compile(r"at `\$((?:\.[A-Za-z_]\w*|\[\d+\])*)`")
# An integer past float64's range needs 309 digits (a float past it, an exponent that msgspec
# refuses itself): only a text with that many digits is searched for such a run.
_LONG_DIGITS = re.compile(rb"[0-9]{309}")
_LONG_DIGITS_MIN_BYTES = 309
_DIGITS = b"0123456789"

_typed_decoder = msgspec.json.Decoder(TypedEnvelope)
_envelope_decoder = msgspec.json.Decoder(Envelope)
_event_decoder = msgspec.json.Decoder(ClientEvent)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class Accepted(msgspec.Struct):
    """The envelope the spool keeps when some events were rejected: the accepted ones only."""

    events: list[msgspec.Raw]


class BatchError(Exception):
    """The body as a whole is not a batch: ``reason`` is invalid_json or invalid_batch."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason, self.error = reason, error


@dataclass(slots=True)
class Decoded:
    """A body whose envelope decoded. Its events are typed in one pass (the usual batch) or raw,
    to be checked one by one; ``notes`` when ``jsonscan`` set bad strings or deep values aside
    (``body`` is then the text with placeholders)."""

    body: bytes
    sent_at: int | None
    k: str | None
    typed: list[ClientEvent] | None = None
    raw: list[msgspec.Raw] | None = None
    notes: jsonscan.Notes = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.typed if self.typed is not None else self.raw or ())


@dataclass(slots=True)
class Checked:
    accepted: list[ClientEvent]
    rejected: list[Rejection]
    body: bytes  # what the spool keeps: the body as received if all are accepted, else the accepted only


def decode_envelope(body: bytes, max_depth: int) -> Decoded:
    """One pass when every event is well-formed (the usual case); otherwise the envelope with its
    events left raw. Raises BatchError when the body is not JSON or not an envelope."""
    try:
        env = _typed_decoder.decode(body)
        return Decoded(body, env.sent_at, env.k, typed=env.events)
    except msgspec.ValidationError:
        pass  # a bad event, or a bad envelope: tell them apart below
    except (msgspec.DecodeError, RecursionError):
        return _set_aside(body, max_depth)
    try:
        raw = _envelope_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise BatchError("invalid_batch", _envelope_error(str(exc))) from None
    except (msgspec.DecodeError, RecursionError):
        return _set_aside(body, max_depth)  # a raw event is skipped, not read: it may still hide a bad string
    return Decoded(body, raw.sent_at, raw.k, raw=raw.events)


def _set_aside(body: bytes, max_depth: int) -> Decoded:
    found = jsonscan.set_aside(body, max_depth + BODY_LEVELS, BODY_LEVELS)
    if found.overflow:
        raise BatchError("invalid_json", f"body has more than {jsonscan.MAX_NOTES} bad strings (invalid UTF-8, lone "
                         "surrogates, bad escapes) or too-deep values; each costs only its event up to that many, "
                         "beyond it the client's encoding is broken: fix it")
    notes = found.notes
    try:
        env = _envelope_decoder.decode(found.data)
    except msgspec.ValidationError as exc:
        also = jsonscan.describe(found.data, notes)
        error = _envelope_error(_placeholders_named(str(exc), notes))
        raise BatchError("invalid_batch", error + (f" (the body also has, at {also[0] or '$'}: {also[1][1]})" if also else "")) from None
    except msgspec.DecodeError as exc:
        aside = f" (once {len(notes)} bad strings or deep values were set aside)" if notes else ""
        raise BatchError("invalid_json", f"body is not valid JSON: {exc}{aside}") from None
    except RecursionError:  # only a body whose deep value never closes can get here
        raise BatchError("invalid_json", "body is not valid JSON: it nests too deeply and never closes") from None
    if env.k is not None and env.k in notes:
        raise BatchError("invalid_batch", f"batch envelope: k: {notes[env.k][1]}")
    return Decoded(found.data, env.sent_at, env.k, raw=env.events, notes=notes)


def _envelope_error(message: str) -> str:
    return f"batch envelope: {message}; expected {{\"sent_at\": ms, \"events\": [...]}}"


def _placeholders_named(message: str, notes: jsonscan.Notes) -> str:
    for marker, (_, what) in notes.items():
        if marker in message:
            message = message.replace(marker, f"<{what}>")
    return message


def excerpt(data: bytes, limit: int = EXCERPT_BYTES) -> str:
    text = data[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(data) > limit else "")


def clean_text(text: str) -> str:
    """``text`` made encodable as UTF-8: a lone surrogate (from a header, a third-party message)
    becomes its escape."""
    if text.isascii():
        return text
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def _value_at(data: bytes, message: str) -> str:
    """`(got ...)` for a validation message that points at a path; the value helps the sender."""
    m = _PATH_RE.search(message)
    if not m:
        return ""
    try:
        node: Any = _any_decoder.decode(data)
        for part in re.findall(r"\.(\w+)|\[(\d+)\]", m.group(1)):
            node = node[part[0]] if part[0] else node[int(part[1])]
        shown = msgspec.json.encode(node).decode()
    except (msgspec.DecodeError, RecursionError, KeyError, IndexError, TypeError, ValueError):
        return ""
    return f" (got {shown[:80]}{'…' if len(shown) > 80 else ''})"


def _too_big_int(index: int, field: str, value: Any) -> tuple[str, str] | None:
    """An integer beyond float64's range in a decoded value (msgspec decodes it as a Python int)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, int) and not isinstance(node, bool):
            try:
                float(node)
            except OverflowError:
                return "invalid_number", f"events[{index}].{field}{path}: integer out of range (numbers must fit a 64-bit float)"
        elif isinstance(node, dict):
            stack.extend((f"{path}.{k}", v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(node))
    return None


def _load_schema(tenant: TenantSettings, level: str, name: str, inline: dict | None, file: str | None) -> Callable:
    where = f"tenants.{tenant.id}.schemas ({level}, {name})"
    if file is not None:
        try:
            inline = msgspec.json.decode(Path(file).read_bytes())
        except (OSError, msgspec.DecodeError) as exc:
            raise ConfigError(f"{where}: cannot read JSON Schema file {file}: {exc}") from None
    try:
        return fastjsonschema.compile(inline)
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise ConfigError(f"{where}: not a valid JSON Schema: {exc}") from None


@dataclass
class TenantRules:
    """A tenant's settings, compiled once at start-up for the request path."""

    tenant: TenantSettings
    limits: CollectorSettings
    any_origin: bool = False
    origins: frozenset[str] = frozenset()
    schemas: dict[tuple[str, str], Callable] = field(default_factory=dict)
    # Nesting n levels takes n openers and n closers: a text this short cannot be too deep.
    short_json_bytes: int = 0

    @classmethod
    def compile(cls, tenant: TenantSettings, limits: CollectorSettings) -> TenantRules:
        rules = cls(tenant, limits, short_json_bytes=2 * limits.max_json_depth)
        rules.any_origin = "*" in tenant.allowed_origins
        origins = set()
        for origin in tenant.allowed_origins:
            if origin != "*":
                canonical = canonical_origin(origin)
                if canonical is None:
                    raise ConfigError(f"tenants.{tenant.id}.allowed_origins: {origin!r} is not an origin")
                origins.add(canonical)
        rules.origins = frozenset(origins)
        for ref in tenant.schemas:
            rules.schemas[(ref.level, ref.name)] = _load_schema(tenant, ref.level, ref.name, ref.schema, ref.file)
        return rules

    def origin_allowed(self, origin: str | None) -> bool:
        # Requests without an Origin come from servers and SDKs, not browsers: the write key
        # is their only credential (write keys are public and can only write).
        return origin is None or self.any_origin or canonical_origin(origin) in self.origins

    def check_batch(self, batch: Decoded, skew_ms: int = 0) -> Checked:
        """``skew_ms``: received_at - sent_at, what clock-skew correction adds to each client_ts."""
        accepted: list[ClientEvent] = []
        kept: list[int] = []
        rejected: list[Rejection] = []
        if batch.typed is not None:
            check = self._check_fields
            for i, ev in enumerate(batch.typed):
                problem = check(i, ev, skew_ms)
                if problem is None:
                    accepted.append(ev)
                    kept.append(i)
                else:
                    rejected.append(Rejection(i, problem[0], clean_text(problem[1]), excerpt(_encoder.encode(ev))))
        else:
            for i, item in enumerate(batch.raw or ()):
                ev, rej = self.check_raw(i, bytes(item), batch.notes, skew_ms)
                if ev is not None:
                    accepted.append(ev)
                    kept.append(i)
                elif rej is not None:
                    rejected.append(rej)
        if not rejected and not batch.notes:
            return Checked(accepted, rejected, batch.body)
        if not accepted:
            return Checked(accepted, rejected, b"")
        raw = batch.raw if batch.raw is not None else _envelope_decoder.decode(batch.body).events
        return Checked(accepted, rejected, _encoder.encode(Accepted([raw[i] for i in kept])))

    def check_raw(self, index: int, data: bytes, notes: jsonscan.Notes,
                  skew_ms: int = 0) -> tuple[ClientEvent | None, Rejection | None]:
        if notes:
            found = jsonscan.describe(data, notes)
            if found is not None:
                path, (reason, what) = found
                return None, Rejection(index, reason, f"events[{index}]{path}: {what}", excerpt(jsonscan.shown(data)))
        try:
            ev = _event_decoder.decode(data)
        except msgspec.ValidationError as exc:
            msg = str(exc)
            return None, Rejection(index, "invalid_event", f"events[{index}]: {msg}{_value_at(data, msg)}", excerpt(data))
        except (msgspec.DecodeError, RecursionError) as exc:
            # Skipped as a raw value, the event was never read: a bad string can still be in it.
            reason, error = self._unreadable(f"events[{index}]", data, self.limits.max_json_depth + 1, 1, exc)
            return None, Rejection(index, reason, error, excerpt(data))
        rej = self.check_parsed(index, ev, data, skew_ms)
        return (ev, None) if rej is None else (None, rej)

    def check_parsed(self, index: int, ev: ClientEvent, data: bytes | None = None, skew_ms: int = 0) -> Rejection | None:
        """The checks types cannot express: props and context are objects within their limits,
        and props pass the tenant's schema for (level, name)."""
        problem = self._check_fields(index, ev, skew_ms)
        if problem is None:
            return None
        reason, error = problem
        return Rejection(index, reason, clean_text(error), excerpt(data if data is not None else _encoder.encode(ev)))

    def _check_fields(self, index: int, ev: ClientEvent, skew_ms: int = 0) -> tuple[str, str] | None:
        if ev.client_ts is not None and not EPOCH_MS_MIN <= ev.client_ts + skew_ms <= EPOCH_MS_MAX:
            # each clock alone is within bounds, but a client_ts far from sent_at moves the
            # skew-corrected event time off the calendar the lake and its readers work with
            return "invalid_event", (
                f"events[{index}].client_ts: {ev.client_ts}, corrected for the client's clock ({skew_ms:+} ms from "
                f"sent_at to received_at), gives event_ts {ev.client_ts + skew_ms}, outside {EPOCH_MS_MIN} to "
                f"{EPOCH_MS_MAX} (2000-01-01 to 2100-01-01)")
        props = bytes(ev.props)
        value: Any = {}
        if props != b"null":
            value = None
            if props[:1] == b"{" and len(props) <= self.short_json_bytes:
                # The usual props, on every event: a short object (too short to be too deep or to
                # hold a huge integer) that decodes at once. Anything else takes the full path.
                try:
                    value = _any_decoder.decode(props)
                except (msgspec.DecodeError, RecursionError):
                    pass
            if value is None:
                problem, value = self._object(index, "props", props, self.limits.max_props_bytes)
                if problem is not None:
                    return problem
        context = bytes(ev.context)
        if context != b"null":
            problem, _ = self._object(index, "context", context, CONTEXT_MAX_BYTES)
            if problem is not None:
                return problem
        validator = self.schemas.get((ev.level, ev.name)) if self.schemas else None
        if validator is not None:
            try:
                validator(value)
            except fastjsonschema.JsonSchemaValueException as exc:
                return "schema", f"events[{index}].props fails the {ev.level}/{ev.name} schema: {exc.message}"
            except Exception as exc:  # a compiled tenant schema runs on hostile values:
                # whatever it raises (OverflowError on a huge multipleOf, RecursionError...) is about this event.
                return "schema", (f"events[{index}].props cannot be checked against the {ev.level}/{ev.name} schema: "
                                  f"{type(exc).__name__}: {str(exc)[:200]}")
        return None

    def _object(self, index: int, field: str, raw: bytes, max_bytes: int) -> tuple[tuple[str, str] | None, Any]:
        """(problem, value) of a props or context text. The hot path of every event: the usual
        one is a short object that decodes at once, so what costs more runs past a cheap test."""
        if raw[:1] != b"{" or len(raw) > self.short_json_bytes:
            problem = self._shape(index, field, raw, max_bytes)
            if problem is not None:
                return problem, None
        try:
            value = _any_decoder.decode(raw)
        except (msgspec.DecodeError, RecursionError) as exc:
            return self._undecodable(index, field, raw, exc), None
        if (len(raw) >= _LONG_DIGITS_MIN_BYTES and len(raw) - len(raw.translate(None, _DIGITS)) >= _LONG_DIGITS_MIN_BYTES
                and _LONG_DIGITS.search(raw)):
            return _too_big_int(index, field, value), value
        return None, value

    def _shape(self, index: int, field: str, raw: bytes, max_bytes: int) -> tuple[str, str] | None:
        """An object, within its size and nesting depth; msgspec's Raw skipped it unread."""
        if raw[:1] != b"{":
            return "invalid_event", f"events[{index}].{field}: must be a JSON object (got {excerpt(raw, 40)})"
        if len(raw) > max_bytes:
            return "too_large", f"events[{index}].{field}: {len(raw)} bytes, limit {max_bytes}"
        max_depth = self.limits.max_json_depth
        if raw.count(b"{") + raw.count(b"[") > max_depth:
            depth = jsonscan.depth_of(raw)
            if depth > max_depth:
                return "too_deep", f"events[{index}].{field}: nested {depth} levels deep, limit {max_depth} (collector.max_json_depth)"
        return None

    def _undecodable(self, index: int, field: str, raw: bytes, exc: Exception) -> tuple[str, str]:
        if isinstance(exc, msgspec.ValidationError):  # msgspec's "Number out of range"
            return "invalid_number", f"events[{index}].{field}: {exc} (numbers must fit a 64-bit float)"
        # the one thing a Raw skip lets through: invalid UTF-8 in a string
        return self._unreadable(f"events[{index}].{field}", raw, self.limits.max_json_depth, 0, exc)

    def _unreadable(self, where: str, data: bytes, max_depth: int, levels_above: int, exc: Exception) -> tuple[str, str]:
        """Reason and message for a text msgspec could not read: the bad string or deep value, by path."""
        found = jsonscan.set_aside(data, max_depth, levels_above)
        if found.overflow:
            return "invalid_string", f"{where}: more than {jsonscan.MAX_NOTES} bad strings or too-deep values"
        located = jsonscan.describe(found.data, found.notes) if found.notes else None
        if located is None:
            return "invalid_event", f"{where}: not valid JSON: {exc}"
        path, (reason, what) = located
        return reason, f"{where}{path}: {what}"
