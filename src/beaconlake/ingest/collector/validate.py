"""Validation of a batch: the envelope, each event's types and limits, the tenant's schemas.

One bad event never sinks its batch: each event is decoded on its own and either accepted
(kept as the exact bytes it arrived in) or rejected with a reason that names the field,
the value and the limit.
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
from beaconlake.types import CONTEXT_MAX_BYTES, ClientEvent, Envelope, Rejection, TypedEnvelope

EXCERPT_BYTES = 512
_PATH_RE = re.compile(r"at `\$((?:\.[A-Za-z_]\w*|\[\d+\])*)`")

_typed_decoder = msgspec.json.Decoder(TypedEnvelope)
_envelope_decoder = msgspec.json.Decoder(Envelope)
_event_decoder = msgspec.json.Decoder(ClientEvent)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def decode_envelope(body: bytes) -> TypedEnvelope | Envelope:
    """One pass when every event is well-formed (the usual case); otherwise the envelope with
    its events left raw, to be checked one by one. Raises msgspec.DecodeError (invalid JSON)
    or msgspec.ValidationError (a bad envelope)."""
    try:
        return _typed_decoder.decode(body)
    except msgspec.ValidationError:
        return _envelope_decoder.decode(body)


def excerpt(data: bytes, limit: int = EXCERPT_BYTES) -> str:
    text = data[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(data) > limit else "")


def _value_at(data: bytes, message: str) -> str:
    """`(got ...)` for a validation message that points at a path; the value helps the sender."""
    m = _PATH_RE.search(message)
    if not m:
        return ""
    try:
        node: Any = _any_decoder.decode(data)
        for part in re.findall(r"\.(\w+)|\[(\d+)\]", m.group(1)):
            node = node[part[0]] if part[0] else node[int(part[1])]
    except (msgspec.DecodeError, KeyError, IndexError, TypeError):
        return ""
    shown = msgspec.json.encode(node).decode()
    return f" (got {shown[:80]}{'…' if len(shown) > 80 else ''})"


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

    @classmethod
    def compile(cls, tenant: TenantSettings, limits: CollectorSettings) -> TenantRules:
        rules = cls(tenant, limits)
        rules.any_origin = "*" in tenant.allowed_origins
        rules.origins = frozenset(o.rstrip("/").lower() for o in tenant.allowed_origins if o != "*")
        for ref in tenant.schemas:
            rules.schemas[(ref.level, ref.name)] = _load_schema(tenant, ref.level, ref.name, ref.schema, ref.file)
        return rules

    def origin_allowed(self, origin: str | None) -> bool:
        # Requests without an Origin come from servers and SDKs, not browsers: the write key
        # is their only credential (write keys are public and can only write).
        return origin is None or self.any_origin or origin.lower() in self.origins

    def check_batch(self, envelope: TypedEnvelope | Envelope) -> tuple[list[ClientEvent], list[int] | None, list[Rejection]]:
        """The accepted events, their indexes in the batch (None when all are), the rejections."""
        accepted: list[ClientEvent] = []
        indexes: list[int] = []
        rejected: list[Rejection] = []
        typed = isinstance(envelope, TypedEnvelope)
        for i, item in enumerate(envelope.events):
            if typed:
                ev, rej = item, self.check_parsed(i, item)
            else:
                ev, rej = self.check_raw(i, bytes(item))
            if rej is None:
                accepted.append(ev)
                indexes.append(i)
            else:
                rejected.append(rej)
        return accepted, (None if not rejected else indexes), rejected

    def check_raw(self, index: int, data: bytes) -> tuple[ClientEvent | None, Rejection | None]:
        try:
            ev = _event_decoder.decode(data)
        except msgspec.ValidationError as exc:
            msg = str(exc)
            return None, Rejection(index, "invalid_event", f"events[{index}]: {msg}{_value_at(data, msg)}", excerpt(data))
        rej = self.check_parsed(index, ev, data)
        return (ev, None) if rej is None else (None, rej)

    def check_parsed(self, index: int, ev: ClientEvent, data: bytes | None = None) -> Rejection | None:
        """The checks types cannot express: props and context are objects within their limits,
        and props pass the tenant's schema for (level, name)."""
        problem = self._check_fields(index, ev)
        if problem is None:
            return None
        reason, error = problem
        return Rejection(index, reason, error, excerpt(data if data is not None else _encoder.encode(ev)))

    def _check_fields(self, index: int, ev: ClientEvent) -> tuple[str, str] | None:
        props = bytes(ev.props)
        if props != b"null":
            if props[:1] != b"{":
                return "invalid_event", f"events[{index}].props: must be a JSON object (got {excerpt(props, 40)})"
            if len(props) > self.limits.max_props_bytes:
                return "too_large", f"events[{index}].props: {len(props)} bytes, limit {self.limits.max_props_bytes}"
        context = bytes(ev.context)
        if context != b"null":
            if context[:1] != b"{":
                return "invalid_event", f"events[{index}].context: must be a JSON object (got {excerpt(context, 40)})"
            if len(context) > CONTEXT_MAX_BYTES:
                return "too_large", f"events[{index}].context: {len(context)} bytes, limit {CONTEXT_MAX_BYTES}"
        validator = self.schemas.get((ev.level, ev.name)) if self.schemas else None
        if validator is not None:
            try:
                validator(_any_decoder.decode(props) if props != b"null" else {})
            except fastjsonschema.JsonSchemaValueException as exc:
                return "schema", f"events[{index}].props fails the {ev.level}/{ev.name} schema: {exc.message}"
        return None
