"""Snowplow's tracker protocol at the door: tp2 batches, the tp1 pixel, app ids, the mapping."""

from __future__ import annotations

import base64
import uuid
from urllib.parse import urlencode

import msgspec
from door_harness import WRITE_KEY
from protocol_harness import JSON, ProtocolDoor

TP2 = "/com.snowplowanalytics.snowplow/tp2"
SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
PHONE_UA = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"


def sp_event(e: str = "pv", **kw) -> dict:
    base = {"e": e, "aid": "shop-web", "p": "web", "tv": "js-4.0.0", "eid": str(uuid.uuid4()), "duid": "duid-1",
            "sid": "5b6c1f0e-0000-4000-8000-000000000001", "dtm": "1764230000000", "stm": "1764230002000",
            "url": "https://shop.example/p/1", "page": "Product 1", "refr": "https://ref.example/",
            "res": "1920x1080", "vp": "1200x800", "lang": "de-DE", "tz": "Europe/Berlin"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


def sd(schema: str, data) -> dict:
    return {"schema": schema, "data": data}


def payload(*events) -> bytes:
    return msgspec.json.encode({"schema": SCHEMA, "data": list(events)})


def make(tmp_path, **collector):
    return ProtocolDoor(tmp_path, tenant={"app_ids": ["shop-web", "shop-ios"]}, collector=collector)


def test_event_types_map_to_canonical_events(tmp_path):
    door = make(tmp_path)
    ue = sd("iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
            sd("iglu:com.acme/Add To Cart/jsonschema/1-0-0", {"sku": "A1", "qty": 2}))
    contexts = sd("iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
                  [sd("iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0", {"id": "pv-1"})])
    events = [
        sp_event("pv", co=msgspec.json.encode(contexts).decode()),
        sp_event("pp", pp_mix="0", pp_max="20", pp_miy="0", pp_may="840", ds="1200x3200"),
        sp_event("se", se_ca="shop", se_ac="Add To Basket", se_la="A1", se_va="19.9"),
        sp_event("ue", ue_px=base64.urlsafe_b64encode(msgspec.json.encode(ue)).decode().rstrip("="), uid="user-7"),
    ]
    answer = door.call(TP2, payload(*events), JSON)
    assert answer.status == 200 and answer.json == {"accepted": 4, "rejected": []}
    rows = {r["name"]: r for r in door.spooled().rows}
    assert set(rows) == {"page_view", "page_ping", "add_to_basket", "add_to_cart"}
    pv = rows["page_view"]
    assert (pv["anonymous_id"], pv["session_id"], pv["url"], pv["title"], pv["referrer"], pv["source"]) == (
        "duid-1", "5b6c1f0e-0000-4000-8000-000000000001", "https://shop.example/p/1", "Product 1", "https://ref.example/", "snowplow")
    ctx = msgspec.json.decode(pv["context"])
    assert (ctx["screen"], ctx["viewport"], ctx["locale"], ctx["tz"]) == ("1920x1080", "1200x800", "de-DE", "Europe/Berlin")
    assert ctx["snowplow"]["contexts"][0]["data"] == {"id": "pv-1"}
    assert ctx["page_view_id"] == "pv-1"  # the web_page entity's id: convert ties the page's events to it
    assert pv["event_id"] == events[0]["eid"]
    assert pv["received_at"] - pv["event_ts"] == 2_000  # dtm -> stm interval, on the collector's clock
    # seen down to 840 + 800 (the viewport) of 3200 px: 51%
    assert msgspec.json.decode(rows["page_ping"]["props"]) == {"pp_mix": 0, "pp_max": 20, "pp_miy": 0, "pp_may": 840,
                                                                "depth_pct": 51}
    assert msgspec.json.decode(rows["add_to_basket"]["props"]) == {"category": "shop", "action": "Add To Basket",
                                                                     "label": "A1", "value": 19.9}
    assert msgspec.json.decode(rows["add_to_cart"]["props"]) == {"sku": "A1", "qty": 2}
    assert rows["add_to_cart"]["user_id"] == "user-7"
    door.close()


def test_unknown_app_id_refused_and_kept(tmp_path):
    door = make(tmp_path)
    answer = door.call(TP2, payload(sp_event(aid="someone-else")), JSON)
    assert answer.status == 401 and answer.json["reason"] == "unknown_app_id"
    assert "'someone-else'" in answer.json["error"] and "app_ids" in answer.json["error"]
    spooled = door.spooled()
    assert spooled.rows == []
    assert [(r["tenant"], r["reason"]) for r in spooled.rejected] == [("_unknown", "unknown_app_id")]
    # mixed: the claimed event is kept, the other rejected, and the answer says which
    answer = door.call(TP2, payload(sp_event(), sp_event(aid="nope")), JSON)
    assert answer.status == 200 and answer.json["accepted"] == 1 and answer.json["rejected"][0]["index"] == 1
    door.close()


def test_write_key_works_as_app_id_and_pixel_answers_a_gif(tmp_path):
    door = make(tmp_path)
    answer = door.pixel(urlencode(sp_event(aid=WRITE_KEY, ua=PHONE_UA, ip="198.51.100.23")))
    assert answer.status == 200 and answer.headers["content-type"] == "image/gif" and answer.body.startswith(b"GIF89a")
    row = door.spooled().rows[0]
    assert (row["name"], row["ip"], row["user_agent"], row["ua_os"], row["is_bot"]) == (
        "page_view", "198.51.100.0", PHONE_UA, "Android", False)
    door.close()


def test_path_prefix(tmp_path):
    door = make(tmp_path, snowplow_path_prefix="/sp")
    assert "/sp" + TP2 in door.routes and TP2 not in door.routes
    assert door.call("/sp" + TP2, payload(sp_event()), JSON).status == 200
    door.close()


def test_bad_payloads(tmp_path):
    door = make(tmp_path)
    assert door.call(TP2, b"{", JSON).json["reason"] == "invalid_json"
    answer = door.call(TP2, msgspec.json.encode({"schema": "iglu:x/y/jsonschema/1-0-0", "data": []}), JSON)
    assert answer.status == 400 and answer.json["reason"] == "invalid_batch"
    answer = door.call(TP2, payload(sp_event(e="zz"), sp_event(duid=..., uid=...)), JSON)
    assert answer.status == 400
    assert [r["error"] for r in answer.json["rejected"]] == [
        "message 0: e: 'zz' is not a supported event type (pv, pp, se, ue)",
        "message 1: duid (the domain user id) or uid is required"]
    door.close()


def test_app_id_claims_are_checked_in_config(tmp_path):
    import pytest

    from beaconlake import config
    from beaconlake.errors import ConfigError

    tenants = [{"id": "a", "write_key": "wk_aaaaaaaaaaaaaaaaaa", "read_key": "rk_aaaaaaaaaaaaaaaaaa", "app_ids": ["web"]},
               {"id": "b", "write_key": "wk_bbbbbbbbbbbbbbbbbb", "read_key": "rk_bbbbbbbbbbbbbbbbbb", "app_ids": ["web"]}]
    with pytest.raises(ConfigError, match=r"tenants.b.app_ids: 'web' is already claimed by tenant 'a'"):
        config.parse({"tenants": tenants}, tmp_path, environ={})
    tenants[1]["app_ids"] = ["wk_aaaaaaaaaaaaaaaaaa"]
    with pytest.raises(ConfigError, match="write key"):
        config.parse({"tenants": tenants}, tmp_path, environ={})
    tenants[1]["app_ids"] = ["bad app id"]
    with pytest.raises(ConfigError, match=r"tenants.b.app_ids: 'bad app id' is not an app id"):
        config.parse({"tenants": tenants}, tmp_path, environ={})
    with pytest.raises(ConfigError, match=r"collector.snowplow_path_prefix: 'sp/' is not a path prefix.*\"/sp\""):
        config.parse({"collector": {"snowplow_path_prefix": "sp/"}}, tmp_path, environ={})


def test_mobile_tracker_event_is_the_devices(tmp_path):
    door = make(tmp_path)
    mobile = sd("iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1", [
        sd("iglu:com.snowplowanalytics.snowplow/mobile_context/jsonschema/1-0-3",
           {"osType": "ios", "osVersion": "17.4", "deviceManufacturer": "Apple", "deviceModel": "iPhone15,2"})])
    answer = door.call(TP2, payload(sp_event("se", p="mob", se_ca="app", se_ac="open", aid="shop-ios",
                                             cx=base64.b64encode(msgspec.json.encode(mobile)).decode())),
                       {**JSON, "user-agent": "Snowplow/4.1 CFNetwork/1490 Darwin/23.2.0"})
    assert answer.status == 200
    row = door.spooled().rows[0]
    assert (row["ua_os"], row["ua_os_version"], row["ua_device"], row["is_bot"]) == ("ios", "17", "iPhone15,2", False)
    door.close()
