"""What every protocol adapter shares: the canonical event it produces, and the conversions of
names, ids and times that must give the same answer in the collector and in ``beaconlake import``.

An adapter maps one foreign message to a ``Mapped``: the canonical event as a JSON-ready dict
(then checked exactly like an event of ``POST /v1/events``), the end user's own agent and
address when the message carries them, and the index the sender knows it by. A message that
cannot be mapped raises ``Unmappable`` with a reason and an error that names the field.

Ids: a foreign message id that is a UUID is the event id as is; any other id becomes a UUID
derived from (tenant, protocol, id), so an SDK's retry of a message is the same event and
convert keeps one row of it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from datetime import UTC, datetime
from typing import Any

from beaconlake.types import EPOCH_MS_MAX, EPOCH_MS_MIN, ID_MAX, NAME_MAX, TEXT_MAX, UserAgent

# Namespace of the event ids derived from a foreign message id that is not a UUID.
FOREIGN_ID_NAMESPACE = uuid.UUID("0c8e7a55-1d2b-4f0e-8a63-4b3d8f6a2c91")
_NOT_NAME = re.compile(r"[^a-z0-9_.:-]+")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Unmappable(Exception):
    """A message that has no canonical form: ``reason`` (the rejection reason) and ``error``."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason, self.error = reason, error


@dataclass(slots=True)
class Mapped:
    event: dict[str, Any]  # a canonical event (ClientEvent's fields), ready to be JSON-encoded
    ip: str | None = None  # the end user's address, when the message carries it
    user_agent: str | None = None  # the end user's agent, likewise
    device: UserAgent | None = None  # a mobile SDK's description of the device, when it sends no agent

    @property
    def end_user(self) -> bool:
        """Whether the message names its end user's client (then it, not the sender's, is enriched)."""
        return self.ip is not None or self.user_agent is not None or self.device is not None


def device(os_name: Any, os_version: Any, model: Any) -> UserAgent | None:
    """A mobile device as the lake's agent columns hold it (an app on a phone is not a bot)."""
    fields = [str(v)[:64] if isinstance(v, (str, int, float)) and not isinstance(v, bool) and v != "" else None
              for v in (os_name, os_version, model)]
    if fields == [None, None, None]:
        return None
    major = fields[1].split(".")[0] if fields[1] else None
    return UserAgent(os=fields[0], os_version=major, device=fields[2], is_bot=False)


@lru_cache(maxsize=4096)  # a site has a few hundred event names, sent over and over
def canonical_name(text: str) -> str:
    """A free-text event name ("Order Completed", "Add to Cart!") as a canonical name
    (``[a-z0-9_.:-]{1,64}``): lower case, every run of other characters one ``_``."""
    name = _NOT_NAME.sub("_", text.strip().lower()).strip("_")[:NAME_MAX].rstrip("_")
    return name or "unnamed"


def event_id(tenant: str, protocol: str, message_id: Any) -> str | None:
    """The canonical event id of a foreign message id (None: the lake derives one)."""
    if message_id is None or message_id == "":
        return None
    text = str(message_id)
    if _CANONICAL_UUID.fullmatch(text):  # what SDKs send: taken as is, without parsing it (hot path)
        return text
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return _derived(tenant, protocol, text)


def _derived(tenant: str, protocol: str, text: str) -> str:
    return str(uuid.uuid5(FOREIGN_ID_NAMESPACE, f"{tenant}\x00{protocol}\x00{text}"))


def iso_ms(value: Any, field: str) -> int | None:
    """An ISO 8601 time (Segment's timestamps), or ms since the epoch, as ms since the epoch."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise Unmappable("invalid_event", f"{field}: {value!r} is not a time")
    if isinstance(value, (int, float)):
        ms = int(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise Unmappable("invalid_event", f"{field}: {shown(value)} is not an ISO 8601 time") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        ms = int(when.timestamp() * 1000)
    else:
        raise Unmappable("invalid_event", f"{field}: {shown(value)} is not a time")
    if not EPOCH_MS_MIN <= ms <= EPOCH_MS_MAX:
        raise Unmappable("invalid_event", f"{field}: {shown(value)} is outside 2000-01-01 to 2100-01-01")
    return ms


def text(value: Any, field: str, limit: int = TEXT_MAX) -> str | None:
    """An optional string field (numbers, as SDKs send ids, become their text); cut to ``limit``."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Unmappable("invalid_event", f"{field}: must be a string (got {shown(value)})")
    out = value if isinstance(value, str) else str(value)
    return out[:limit]


def ident(value: Any, field: str) -> str | None:
    """An id (anonymous, user, session): a string of at most 128 characters, never cut (a cut id
    would merge two people)."""
    out = text(value, field, limit=10**9)
    if out is not None and len(out) > ID_MAX:
        raise Unmappable("invalid_event", f"{field}: {len(out)} characters, limit {ID_MAX}")
    return out


def obj(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Unmappable("invalid_event", f"{field}: must be a JSON object (got {shown(value)})")
    return value


def shown(value: Any, limit: int = 60) -> str:
    out = repr(value)
    return out if len(out) <= limit else out[:limit] + "…"
