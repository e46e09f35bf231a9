"""Segment's HTTP API at the door: auth, limits, answers, and what reaches the lake."""

from __future__ import annotations

import gzip
import uuid

import msgspec
from protocol_harness import JSON, SERVER_UA, basic, message

from beaconlake.ingest.protocols.common import FOREIGN_ID_NAMESPACE

PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")


def batch(*messages, **extra) -> bytes:
    return msgspec.json.encode({"batch": list(messages), "sentAt": "2025-11-27T08:00:10.000Z", **extra})


def test_every_call_type_maps_to_its_canonical_event(door):
    msgs = [
        message("track", event="Product Added!", properties={"sku": "A1"}),
        message("page", messageId="m-page", name="Home", properties={"url": "https://shop.example/?utm_source=x",
                "title": "Shop", "referrer": "https://ref.example/"}),
        message("screen", messageId="m-screen", name="Cart"),
        message("identify", messageId="m-id", userId="u-1", traits={"email": "p@example.com"}),
        message("group", messageId="m-group", userId="u-1", groupId="g-9", traits={"plan": "pro"}),
        message("alias", messageId="m-alias", anonymousId=..., previousId="anon-1", userId="u-1"),
    ]
    answer = door.call("/v1/batch", batch(*msgs), {"authorization": basic(), **JSON})
    assert answer.status == 200 and answer.json == {"success": True}
    rows = {r["context"] and msgspec.json.decode(r["context"])["segment"]["type"]: r for r in door.spooled().rows}
    assert rows["track"]["name"] == "product_added"
    assert msgspec.json.decode(rows["track"]["context"])["segment"]["event"] == "Product Added!"
    assert msgspec.json.decode(rows["track"]["props"]) == {"sku": "A1"}
    assert (rows["page"]["name"], rows["page"]["url"], rows["page"]["title"], rows["page"]["referrer"]) == (
        "page_view", "https://shop.example/?utm_source=x", "Shop", "https://ref.example/")
    assert rows["screen"]["name"] == "screen_view"
    assert (rows["identify"]["anonymous_id"], rows["identify"]["user_id"]) == ("anon-1", "u-1")
    # traits kept as props, scrubbed like every door's events: the default PII rules redact e-mail addresses
    assert msgspec.json.decode(rows["identify"]["props"]) == {"email": "[email]"}
    assert msgspec.json.decode(rows["group"]["context"])["segment"]["groupId"] == "g-9"
    # alias: previousId -> userId, the pair convert's identity map joins
    assert (rows["alias"]["anonymous_id"], rows["alias"]["user_id"]) == ("anon-1", "u-1")
    assert {r["source"] for r in rows.values()} == {"segment"}
    # a messageId that is no UUID: a UUID derived from tenant and messageId, the same every time
    assert rows["page"]["event_id"] == str(uuid.uuid5(FOREIGN_ID_NAMESPACE, "shop\x00segment\x00m-page"))
    assert rows["track"]["event_id"] == "0f2a5a0e-7d7e-4a43-9c55-2f8f0f6b9a11"


def test_single_call_routes_long_and_short(door):
    for path, kind in (("/v1/track", "track"), ("/v1/t", "track"), ("/v1/p", "page"), ("/v1/i", "identify"),
                       ("/v1/s", "screen"), ("/v1/g", "group"), ("/v1/a", "alias")):
        msg = message(kind, type=..., userId="u-2", previousId="anon-1", writeKey=door.settings.tenants[0].write_key,
                      sentAt="2025-11-27T08:00:01.000Z", messageId=str(uuid.uuid4()))
        answer = door.call(path, msgspec.json.encode(msg), {"content-type": "text/plain"})
        assert answer.status == 200, (path, answer.json)
    names = sorted(r["name"] for r in door.spooled().rows)
    assert names == sorted(["order_completed", "order_completed", "page_view", "identify", "screen_view", "group", "alias"])


def test_skew_correction_as_segment_documents_it(door):
    # the sender's clock is 1 hour fast: the event happened 10 s before it was sent
    msg = message(timestamp="2025-11-27T09:00:00.000Z")
    door.call("/v1/batch", msgspec.json.encode({"batch": [msg], "sentAt": "2025-11-27T09:00:10.000Z"}),
              {"authorization": basic(), **JSON})
    row = door.spooled().rows[0]
    assert row["received_at"] - row["event_ts"] == 10_000
    assert row["sent_at"] - row["client_ts"] == 10_000


def test_message_sent_at_inside_a_batch_is_its_own(door):
    early = message(messageId=str(uuid.uuid4()), timestamp="2025-11-27T09:00:00.000Z", sentAt="2025-11-27T09:00:05.000Z")
    late = message(messageId=str(uuid.uuid4()), timestamp="2025-11-27T09:00:00.000Z", sentAt="2025-11-27T09:00:08.000Z")
    door.call("/v1/batch", msgspec.json.encode({"batch": [early, late], "sentAt": "2025-11-27T09:00:10.000Z"}),
              {"authorization": basic(), **JSON})
    rows = sorted(door.spooled().rows, key=lambda r: r["event_ts"])
    assert [r["received_at"] - r["event_ts"] for r in rows] == [8_000, 5_000]


def test_end_user_context_is_what_enrichment_reads(door):
    """A backend (python-requests) sends a real person's event: their agent and address are the event's."""
    person = message(messageId=str(uuid.uuid4()), context={"ip": "198.51.100.77", "userAgent": PHONE_UA, "locale": "fr-FR"})
    backend = message(messageId=str(uuid.uuid4()))
    answer = door.call("/v1/batch", batch(person, backend), {"authorization": basic(), **JSON})
    assert answer.status == 200
    rows = {r["event_id"]: r for r in door.spooled().rows}
    p, b = rows[person["messageId"]], rows[backend["messageId"]]
    assert (p["ip"], p["user_agent"], p["ua_os"], p["is_bot"]) == ("198.51.100.0", PHONE_UA, "iOS", False)
    assert "198.51.100.77" not in p["context"] and "userAgent" not in p["context"]  # never stored whole
    assert msgspec.json.decode(p["context"])["locale"] == "fr-FR"
    assert (b["user_agent"], b["is_bot"], b["ip"]) == (SERVER_UA, True, "203.0.113.0")


def test_gzip_body_and_write_key_in_body(door):
    body = gzip.compress(batch(message(), writeKey=door.settings.tenants[0].write_key))
    answer = door.call("/v1/batch", body, {**JSON, "content-encoding": "gzip"})
    assert answer.status == 200
    assert len(door.spooled().rows) == 1


def test_auth_errors_are_clear(door):
    assert door.call("/v1/batch", batch(message()), JSON).json["code"] == "missing_key"
    answer = door.call("/v1/batch", batch(message()), {"authorization": basic("wk_nobodynobodynobody"), **JSON})
    assert answer.status == 401 and answer.json["success"] is False and answer.json["code"] == "unknown_key"
    assert "write key" in answer.json["message"]
    assert door.spooled().rows == []


def test_limits_and_json_errors_answer_400_and_are_kept(door):
    big = message(properties={"blob": "x" * (33 * 1024)})
    ok = message(messageId=str(uuid.uuid4()))
    answer = door.call("/v1/batch", batch(big, ok), {"authorization": basic(), **JSON})
    assert answer.status == 200 and answer.json["rejected"][0]["reason"] == "too_large"
    assert "32768" in answer.json["rejected"][0]["error"]
    answer = door.call("/v1/batch", batch(*[message(messageId=str(uuid.uuid4()), properties={"b": "y" * 20_000})
                                            for _ in range(30)]), {"authorization": basic(), **JSON})
    assert answer.status == 400 and answer.json["code"] == "too_large" and "512000" in answer.json["message"]
    answer = door.call("/v1/batch", b'{"batch": [', {"authorization": basic(), **JSON})
    assert answer.status == 400 and answer.json == {"success": False, "code": "invalid_json", "message": answer.json["message"]}
    answer = door.call("/v1/batch", b'{"batch": {}}', {"authorization": basic(), **JSON})
    assert answer.status == 400 and answer.json["code"] == "invalid_batch"
    spooled = door.spooled()
    assert len(spooled.rows) == 1
    assert sorted(r["reason"] for r in spooled.rejected) == ["invalid_batch", "invalid_json", "too_large"]


def test_every_message_rejected_is_a_400_that_lists_them(door):
    answer = door.call("/v1/batch", batch(message(anonymousId=...), message(event=...)), {"authorization": basic(), **JSON})
    assert answer.status == 400 and answer.json["code"] == "invalid_events"
    assert [r["error"] for r in answer.json["rejected"]] == [
        "message 0: anonymousId or userId is required", "message 1: track needs an event name ('event')"]
    assert len(door.spooled().rejected) == 2


def test_tenant_schema_applies_to_the_mapped_event(tmp_path):
    from protocol_harness import ProtocolDoor

    schema = {"type": "object", "required": ["revenue"], "properties": {"revenue": {"type": "number"}}}
    d = ProtocolDoor(tmp_path, tenant={"schemas": [{"level": "mid", "name": "order_completed", "schema": schema}]})
    try:
        answer = d.call("/v1/batch", batch(message(properties={"revenue": "lots"}), message(messageId=str(uuid.uuid4()))),
                        {"authorization": basic(), **JSON})
        assert answer.status == 200
        assert answer.json["rejected"][0]["reason"] == "schema" and "mid/order_completed" in answer.json["rejected"][0]["error"]
        assert len(d.spooled().rows) == 1
    finally:
        d.close()


def test_browser_preflight_and_origin(door):
    answer = door.call("/v1/t", b"", {"origin": "https://shop.example", "access-control-request-headers": "authorization"},
                       method="OPTIONS")
    assert answer.status == 204 and "authorization" in answer.headers["access-control-allow-headers"]
    assert answer.headers["access-control-allow-origin"] == "https://shop.example"


def test_batch_over_max_batch_events_is_refused_and_kept(door):
    many = [message(messageId=str(uuid.uuid4()), properties={}) for _ in range(501)]
    answer = door.call("/v1/batch", batch(*many), {"authorization": basic(), **JSON})
    assert answer.status == 413 and answer.json["code"] == "too_large"
    assert "501 messages, limit 500 (collector.max_batch_events)" in answer.json["message"]
    spooled = door.spooled()
    assert spooled.rows == [] and [r["reason"] for r in spooled.rejected] == ["too_large"]


def test_mobile_message_is_the_devices_not_the_http_clients(door):
    """Segment's Android library posts with okhttp's agent (a bot to the parser); its message says the device."""
    msg = message(context={"library": {"name": "analytics-android", "version": "4.11.3"},
                           "os": {"name": "Android", "version": "14.0.1"},
                           "device": {"manufacturer": "Google", "model": "Pixel 8", "type": "android"},
                           "app": {"name": "Shop", "version": "2.1"}})
    answer = door.call("/v1/batch", batch(msg), {"authorization": basic(), "user-agent": "okhttp/4.12.0", **JSON})
    assert answer.status == 200
    row = door.spooled().rows[0]
    assert (row["ua_os"], row["ua_os_version"], row["ua_device"], row["is_bot"]) == ("Android", "14", "Pixel 8", False)
    assert row["user_agent"] is None and msgspec.json.decode(row["context"])["app"] == {"name": "Shop", "version": "2.1"}
