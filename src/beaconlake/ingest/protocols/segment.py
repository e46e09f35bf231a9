"""Segment's spec (what Segment's and RudderStack's libraries send, and their archives hold),
mapped to the canonical event. The mapping table is in docs/protocols.md; this module is it.

One message in, one canonical event out, or ``Unmappable``: a message never half-maps. The
mapping depends only on the message, the tenant and the request's ``sentAt``, so the collector
and ``beaconlake import`` give one message the same event (and the same event id).

Times, as Segment documents them: the event happened at ``originalTimestamp`` (else
``timestamp``) on the sender's clock; ``sentAt`` is that clock when the request left. The
collector anchors the interval to its own clock (``event_ts = received_at - (sent_at -
client_ts)``); a message with its own ``sentAt`` inside a batch has its ``client_ts`` moved by
the difference, so one request-wide ``sent_at`` gives every message its own correction.
"""

from __future__ import annotations

from typing import Any

from beaconlake.ingest.protocols.common import (
    Mapped,
    Unmappable,
    canonical_name,
    device,
    event_id,
    ident,
    iso_ms,
    obj,
    text,
)

# Segment's documented limits of its HTTP tracking API.
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
TYPES = ("track", "page", "screen", "identify", "group", "alias")
# The single-call routes, long (Segment's HTTP API, RudderStack) and short (analytics-next).
ROUTE_TYPES = {
    **{f"/v1/{t}": t for t in TYPES},
    "/v1/t": "track", "/v1/p": "page", "/v1/s": "screen", "/v1/i": "identify", "/v1/g": "group", "/v1/a": "alias",
}
BATCH_ROUTES = ("/v1/batch", "/v1/b")  # /v1/b: analytics-next's batching delivery strategy
FIXED_NAMES = {"page": "page_view", "screen": "screen_view", "identify": "identify", "group": "group", "alias": "alias"}
# Context fields that become the event's own columns, not part of its context text.
_CONSUMED = ("ip", "userAgent", "page", "timezone")


def map_message(msg: Any, tenant: str, route_type: str | None = None, sent_at_ms: int | None = None) -> Mapped:
    """The canonical event of one Segment message. ``route_type``: the type the route implies
    (``/v1/track``); ``sent_at_ms``: the request's ``sentAt``, what the event's skew is measured from."""
    msg = obj(msg, "message")
    kind = msg.get("type", route_type)
    if isinstance(kind, str):
        kind = kind.lower()
    if kind not in TYPES:
        raise Unmappable("invalid_event", f"type: {kind!r} is not one of {', '.join(TYPES)}")
    context = obj(msg.get("context"), "context")
    page = obj(context.get("page"), "context.page")
    props = obj(msg.get("traits") if kind in ("identify", "group") else msg.get("properties"),
                "traits" if kind in ("identify", "group") else "properties")

    user_id = ident(msg.get("userId"), "userId")
    anonymous_id = ident(msg.get("anonymousId"), "anonymousId")
    if kind == "alias":
        # previousId -> userId: the event that makes convert's identity map join the two
        anonymous_id = ident(msg.get("previousId"), "previousId")
        if anonymous_id is None or user_id is None:
            raise Unmappable("invalid_event", "alias needs both previousId and userId")
    anonymous_id = anonymous_id or user_id
    if anonymous_id is None:
        raise Unmappable("invalid_event", "anonymousId or userId is required")

    if kind == "track":
        original = text(msg.get("event"), "event", limit=10**6)
        if original is None:
            raise Unmappable("invalid_event", "track needs an event name ('event')")
        name = canonical_name(original)
    else:
        original = None
        name = FIXED_NAMES[kind]

    client_ts = iso_ms(msg.get("originalTimestamp"), "originalTimestamp") or iso_ms(msg.get("timestamp"), "timestamp")
    own_sent = iso_ms(msg.get("sentAt"), "sentAt")
    if client_ts is not None and own_sent is not None and sent_at_ms is not None:
        client_ts += sent_at_ms - own_sent  # this message's interval, against the request's sentAt

    extra: dict[str, Any] = {"type": kind}
    if original is not None:
        extra["event"] = original
    for key in ("name", "category", "groupId", "messageId"):
        if key in msg and msg[key] is not None:
            extra[key] = msg[key]
    if any(key in context for key in _CONSUMED):
        out_context = {k: v for k, v in context.items() if k not in _CONSUMED}
        if context.get("timezone") is not None:
            out_context["tz"] = context["timezone"]
    else:
        out_context = dict(context)
    out_context["segment"] = extra

    event: dict[str, Any] = {"level": "mid", "name": name, "anonymous_id": anonymous_id, "props": props,
                             "context": out_context}
    message_id = event_id(tenant, "segment", msg.get("messageId"))
    if message_id is not None:
        event["event_id"] = message_id
    if user_id is not None:
        event["user_id"] = user_id
    if client_ts is not None:
        event["client_ts"] = client_ts
    on_page = props if kind == "page" else {}
    for key, field in (("url", "url"), ("referrer", "referrer"), ("title", "title")):
        value = text(on_page.get(key), f"properties.{key}") or text(page.get(key), f"context.page.{key}")
        if value is not None:
            event[field] = value
    os_info, hardware = context.get("os"), context.get("device")
    mobile = None
    if isinstance(os_info, dict) or isinstance(hardware, dict):  # Segment's mobile libraries: no agent, these instead
        os_info = os_info if isinstance(os_info, dict) else {}
        hardware = hardware if isinstance(hardware, dict) else {}
        mobile = device(os_info.get("name"), os_info.get("version"), hardware.get("model") or hardware.get("type"))
    return Mapped(event, ip=text(context.get("ip"), "context.ip", 64),
                  user_agent=text(context.get("userAgent"), "context.userAgent", 512), device=mobile)


def merged(msg: Any, batch_context: Any) -> Any:
    """A message of a batch with the batch's own ``context`` under it, as Segment merges them
    (the message's fields win)."""
    if not isinstance(msg, dict) or not isinstance(batch_context, dict) or not batch_context:
        return msg
    context = msg.get("context")
    return {**msg, "context": {**batch_context, **(context if isinstance(context, dict) else {})}}
