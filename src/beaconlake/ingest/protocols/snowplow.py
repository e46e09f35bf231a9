"""Snowplow's tracker protocol (what its 20+ trackers send, and enriched archives hold), mapped
to the canonical event. The mapping table is in docs/protocols.md; this module is it.

A Snowplow event is a flat map of short string parameters (``e=pv&aid=shop&duid=…``): POSTed as
``{"schema": "iglu:…/payload_data/…", "data": [{…}, …]}`` to ``/com.snowplowanalytics.snowplow/tp2``
or sent one per ``GET /i?…`` pixel. Snowplow has no write key: the app id (``aid``) says whose
event it is, and ``tenant_of`` is where the tenants' claims (``tenants.app_ids``, or the write key
itself) are looked up.

Times: ``dtm`` is the device's clock when the event happened, ``stm`` when it was sent; as with
Segment, the collector anchors that interval to its own clock, per event.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import msgspec

from beaconlake.ingest.protocols.common import Mapped, Unmappable, canonical_name, device, event_id, ident, shown, text
from beaconlake.types import EPOCH_MS_MAX, EPOCH_MS_MIN, ID_MAX

TP2_PATH = "/com.snowplowanalytics.snowplow/tp2"
TP1_PATH = "/i"
PAYLOAD_SCHEMA_PREFIX = "iglu:com.snowplowanalytics.snowplow/payload_data/"
WEB_PAGE_SCHEMA = "iglu:com.snowplowanalytics.snowplow/web_page/"
MOBILE_SCHEMA = "iglu:com.snowplowanalytics.snowplow/mobile_context/"  # what the mobile trackers attach
EVENT_NAMES = {"pv": "page_view", "pp": "page_ping"}
_PING_FIELDS = ("pp_mix", "pp_max", "pp_miy", "pp_may")
_STRUCT_FIELDS = (("se_ca", "category"), ("se_ac", "action"), ("se_la", "label"), ("se_pr", "property"))
_json = msgspec.json.Decoder()


def map_event(params: Mapping[str, Any], tenant: str, sent_at_ms: int | None = None) -> Mapped:
    """The canonical event of one tracker-protocol event. ``sent_at_ms``: the ``stm`` the
    request's skew is measured from (the events of a batch may each carry their own)."""
    kind = params.get("e")
    anonymous_id = ident(params.get("duid"), "duid") or ident(params.get("nuid"), "nuid")
    user_id = ident(params.get("uid"), "uid")
    anonymous_id = anonymous_id or user_id
    if anonymous_id is None:
        raise Unmappable("invalid_event", "duid (the domain user id) or uid is required")

    props: dict[str, Any] = {}
    extra: dict[str, Any] = {"e": kind}
    if kind in EVENT_NAMES:
        name = EVENT_NAMES[kind]
        if kind == "pp":
            for key in _PING_FIELDS:
                if params.get(key) not in (None, ""):
                    props[key] = _int(params[key], key)
            depth = _scroll_depth(props.get("pp_may"), params.get("vp"), params.get("ds"))
            if depth is not None:
                props["depth_pct"] = depth
    elif kind == "se":
        action = text(params.get("se_ac"), "se_ac")
        if action is None:
            raise Unmappable("invalid_event", "a structured event (e=se) needs se_ac (its action)")
        name = canonical_name(action)
        props = {field: params[key] for key, field in _STRUCT_FIELDS if params.get(key) not in (None, "")}
        if params.get("se_va") not in (None, ""):
            props["value"] = _float(params["se_va"], "se_va")
    elif kind == "ue":
        inner = _self_describing(_json_param(params, "ue_pr", "ue_px"), "ue_pr")
        schema = inner.get("schema")
        data = inner.get("data")
        if not isinstance(schema, str) or not isinstance(data, dict):
            raise Unmappable("invalid_event", f"ue_pr: the event must be {{\"schema\": …, \"data\": {{…}}}} (got {shown(inner)})")
        name = canonical_name(_schema_name(schema))
        props = data
        extra["schema"] = schema
    else:
        raise Unmappable("invalid_event", f"e: {shown(kind)} is not a supported event type (pv, pp, se, ue)")

    contexts = _json_param(params, "co", "cx")
    page_view_id = mobile = None
    if contexts is not None:
        entities = _self_describing(contexts, "co").get("data")
        extra["contexts"] = entities
        page_view_id = _web_page_id(entities)
        mobile = _entity(entities, MOBILE_SCHEMA)
    for key in ("aid", "p", "tv", "vid"):
        if params.get(key) not in (None, ""):
            extra[key] = params[key]
    context: dict[str, Any] = {}
    for key, field in (("res", "screen"), ("vp", "viewport"), ("lang", "locale"), ("tz", "tz")):
        if params.get(key) not in (None, ""):
            context[field] = params[key]
    if page_view_id is not None:  # the browser tracker's page view id: how convert ties events to their page view
        context["page_view_id"] = page_view_id
    context["snowplow"] = extra

    client_ts = _ms(params.get("ttm") or params.get("dtm"), "dtm")
    own_sent = _ms(params.get("stm"), "stm")
    if client_ts is not None and own_sent is not None and sent_at_ms is not None:
        client_ts += sent_at_ms - own_sent

    event: dict[str, Any] = {"level": "mid", "name": name, "anonymous_id": anonymous_id, "props": props, "context": context}
    for key, value in (
        ("event_id", event_id(tenant, "snowplow", params.get("eid"))),
        ("user_id", user_id),
        ("session_id", ident(params.get("sid"), "sid")),
        ("client_ts", client_ts),
        ("url", text(params.get("url"), "url")),
        ("referrer", text(params.get("refr"), "refr")),
        ("title", text(params.get("page"), "page")),
    ):
        if value is not None:
            event[key] = value
    hardware = None if mobile is None else device(mobile.get("osType"), mobile.get("osVersion"), mobile.get("deviceModel"))
    return Mapped(event, ip=text(params.get("ip"), "ip", 64), user_agent=text(params.get("ua"), "ua", 512), device=hardware)


def sent_at(params: Mapping[str, Any]) -> int | None:
    """An event's ``stm``, when it has a usable one."""
    try:
        return _ms(params.get("stm"), "stm")
    except Unmappable:
        return None


def payload_events(body: Any) -> list[Any]:
    """The events of a tp2 POST body; raises Unmappable when it is not a payload_data document."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise Unmappable("invalid_batch", 'body must be {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/…", '
                         '"data": [{…}, …]}')
    schema = body.get("schema")
    if not isinstance(schema, str) or not schema.startswith(PAYLOAD_SCHEMA_PREFIX):
        raise Unmappable("invalid_batch", f"schema: {shown(schema)} is not {PAYLOAD_SCHEMA_PREFIX}…")
    return body["data"]


def _entity(entities: Any, schema: str) -> dict[str, Any] | None:
    """The data of the first entity of ``schema`` (a URI prefix) among an event's contexts."""
    if not isinstance(entities, list):
        return None
    for entity in entities:
        if (isinstance(entity, dict) and isinstance(entity.get("schema"), str) and isinstance(entity.get("data"), dict)
                and entity["schema"].startswith(schema)):
            return entity["data"]
    return None


def _web_page_id(entities: Any) -> str | None:
    """The id of the ``web_page`` entity the browser tracker attaches to every event of a page view."""
    page = _entity(entities, WEB_PAGE_SCHEMA)
    return page["id"][:ID_MAX] if page is not None and isinstance(page.get("id"), str) else None


def _scroll_depth(max_y: Any, viewport: Any, document: Any) -> int | None:
    """How far down the page the reader has seen, in percent (what convert's ``max_scroll_pct``
    reads): the ping's deepest vertical offset plus the viewport's height, over the document's."""
    try:
        view_h = int(str(viewport).split("x")[1])
        doc_h = int(str(document).split("x")[1])
    except (IndexError, ValueError):
        return None
    if not isinstance(max_y, int) or doc_h <= 0 or view_h < 0:
        return None
    return max(0, min(100, round((max(max_y, 0) + view_h) * 100 / doc_h)))


def _schema_name(schema: str) -> str:
    """``iglu:com.acme/add_to_cart/jsonschema/1-0-0`` -> ``add_to_cart``."""
    parts = schema.removeprefix("iglu:").split("/")
    if len(parts) != 4 or not parts[1]:
        raise Unmappable("invalid_event", f"ue_pr: {shown(schema)} is not an Iglu schema URI (iglu:vendor/name/format/version)")
    return parts[1]


def _json_param(params: Mapping[str, Any], plain: str, encoded: str) -> Any:
    if params.get(plain) not in (None, ""):
        raw = params[plain]
        where = plain
    elif params.get(encoded) not in (None, ""):
        try:
            raw = base64.urlsafe_b64decode(_padded(str(params[encoded])))
        except (binascii.Error, ValueError):
            raise Unmappable("invalid_event", f"{encoded}: not base64url") from None
        where = encoded
    else:
        return None
    if isinstance(raw, dict):
        return raw
    try:
        return _json.decode(raw.encode() if isinstance(raw, str) else raw)
    except msgspec.DecodeError as exc:
        raise Unmappable("invalid_event", f"{where}: not JSON ({exc})") from None


def _self_describing(value: Any, field: str) -> dict[str, Any]:
    """The ``data`` of a self-describing JSON (``{"schema": …, "data": …}``)."""
    if not isinstance(value, dict) or "data" not in value:
        raise Unmappable("invalid_event", f"{field}: must be a self-describing JSON {{\"schema\": …, \"data\": …}}")
    data = value["data"]
    return data if isinstance(data, dict) else {"data": data}


def _padded(text_: str) -> str:
    return text_ + "=" * (-len(text_) % 4)


def _ms(value: Any, field: str) -> int | None:
    if value in (None, ""):
        return None
    ms = _int(value, field)
    if not EPOCH_MS_MIN <= ms <= EPOCH_MS_MAX:
        raise Unmappable("invalid_event", f"{field}: {ms} is not ms since the epoch between 2000-01-01 and 2100-01-01")
    return ms


def _int(value: Any, field: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Unmappable("invalid_event", f"{field}: {shown(value)} is not an integer") from None


def _float(value: Any, field: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise Unmappable("invalid_event", f"{field}: {shown(value)} is not a number") from None
    if out != out or out in (float("inf"), float("-inf")):
        raise Unmappable("invalid_event", f"{field}: {shown(value)} is not a finite number")
    return out
