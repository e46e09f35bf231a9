"""An event of ``POST /v1/events`` that names its own end user (``context.ip``,
``context.userAgent``: a backend or a mobile app sending on a person's behalf) is enriched with
them, not with the sending server's address and agent, so a real person's event sent by a
``python-requests`` backend is not flagged a bot.

The two keys are lifted out of the event's context before the spool sees it: the address is
stored only anonymised (``collector.anonymize_ip``), like the request's, and both live in the
event's ``ip`` / ``user_agent`` columns instead. Only events whose context mentions one of the
keys pay for a decode.
"""

from __future__ import annotations

from typing import Any

import msgspec

from beaconlake.ingest.collector.enrich import end_user
from beaconlake.ingest.collector.validate import Accepted
from beaconlake.types import Client, ClientEvent

KEYS = ("ip", "userAgent")
_MARKERS = (b'"ip"', b'"userAgent"')
_NULL = msgspec.Raw(b"null")
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def mentions_end_user(events: list[ClientEvent]) -> bool:
    """Whether a context names an end user. One search in the contexts that are not null,
    joined with NUL (in no marker), not two per event: most events have none."""
    contexts = [ev.context for ev in events if ev.context != _NULL]
    if not contexts:
        return False
    joined = b"\x00".join(contexts)
    return _MARKERS[0] in joined or _MARKERS[1] in joined


def lift(events: list[ClientEvent], anonymize: bool) -> tuple[bytes, dict[int, Client] | None]:
    """The body to spool (the accepted events, their end-user keys taken out of context) and the
    end users by event index; ``events`` are changed in place."""
    clients: dict[int, Client] = {}
    for index, ev in enumerate(events):
        context = bytes(ev.context)
        if _MARKERS[0] not in context and _MARKERS[1] not in context:
            continue
        value: Any = _decoder.decode(context)  # the door has decoded it once already: it decodes
        ip, ua = value.get("ip"), value.get("userAgent")
        if not isinstance(ip, (str, type(None))) or not isinstance(ua, (str, type(None))) or (ip is None and ua is None):
            continue  # not an end user's address and agent: left in context as sent
        for key in KEYS:
            value.pop(key, None)
        ev.context = msgspec.Raw(_encoder.encode(value))
        clients[index] = end_user(ip, ua, anonymize)
    body = _encoder.encode(Accepted([msgspec.Raw(_encoder.encode(ev)) for ev in events]))
    return body, clients or None
