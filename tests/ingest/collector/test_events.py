"""Every rule of POST /v1/events, with its status code, through the real ASGI app."""

import gzip
import uuid

import msgspec
import pytest
from conftest import OTHER_KEY, WRITE_KEY, body, event

from beaconlake.ingest.deliver import Deliverer
from support import read_lake

URL = f"/v1/events?k={WRITE_KEY}"
TEXT = {"content-type": "text/plain;charset=UTF-8"}


def deliver(client) -> list[dict]:
    """Seal what the app spooled and run one delivery pass, as the deliverer process would."""
    client.portal.call(client.app.collector.writer.seal)
    Deliverer(client.settings).run_once()
    return read_lake(client.settings.data_dir)


def test_accepts_a_batch_and_delivers_it_enriched(client):
    eid = str(uuid.uuid4())
    r = client.post(
        URL,
        content=body(event(event_id=eid, props={"path": "/shoes"}, context={"locale": "it-IT"}), sent_at=1_764_230_002_000),
        headers={**TEXT, "x-forwarded-for": "198.51.100.7"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "rejected": []}
    [row] = deliver(client)
    assert row["event_id"] == eid
    assert row["tenant"] == "shop" and row["level"] == "mid" and row["name"] == "page_view"
    # event_ts = received_at - (sent_at - client_ts): the event happened 2 s before the send.
    assert row["event_ts"] == row["received_at"] - 2000
    assert msgspec.json.decode(row["props"]) == {"path": "/shoes"}
    assert msgspec.json.decode(row["context"]) == {"locale": "it-IT"}
    assert row["ua_browser"] == "Firefox" and row["ua_os"] == "Linux" and row["is_bot"] is False
    # X-Forwarded-For is not trusted by default; the peer's address is anonymised.
    assert row["ip"] == "203.0.113.0"


def test_forwarded_for_is_read_through_trusted_proxies_and_anonymised(make_client):
    # The peer (203.0.113.9) and 10.0.0.1 are our proxies; 198.51.100.7 is the client they saw.
    client = make_client(server={"trusted_proxies": ["203.0.113.0/24", "10.0.0.0/8"]})
    assert client.post(URL, content=body(event()), headers={**TEXT, "x-forwarded-for": "198.51.100.7, 10.0.0.1"}).status_code == 200
    [row] = deliver(client)
    assert row["ip"] == "198.51.100.0"


def test_ip_kept_whole_when_anonymisation_is_off(make_client):
    client = make_client(server={"trusted_proxies": ["203.0.113.9"]}, collector={"anonymize_ip": False})
    client.post(URL, content=body(event()), headers={**TEXT, "x-forwarded-for": "198.51.100.7"})
    assert deliver(client)[0]["ip"] == "198.51.100.7"


def test_missing_event_id_gets_a_stable_one(client):
    client.post(URL, content=body(event(), event()), headers=TEXT)
    rows = deliver(client)
    ids = {r["event_id"] for r in rows}
    assert len(ids) == 2
    assert all(uuid.UUID(i).version == 5 for i in ids)


def test_bot_user_agents_are_flagged(client):
    client.post(URL, content=body(event()), headers={**TEXT, "user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"})
    assert deliver(client)[0]["is_bot"] is True


@pytest.mark.parametrize("how", ["query", "header", "body"])
def test_write_key_from_query_header_or_body(client, how):
    if how == "query":
        r = client.post(URL, content=body(event()), headers=TEXT)
    elif how == "header":
        r = client.post("/v1/events", content=body(event()), headers={**TEXT, "x-beaconlake-key": WRITE_KEY})
    else:
        r = client.post("/v1/events", content=body(event(), k=WRITE_KEY), headers=TEXT)
    assert r.status_code == 200 and r.json()["accepted"] == 1


def test_tenant_comes_from_the_key_never_the_body(client):
    client.post(f"/v1/events?k={OTHER_KEY}", content=body(event()), headers=TEXT)
    assert deliver(client)[0]["tenant"] == "other"


def test_gzip_body(client):
    r = client.post(URL, content=gzip.compress(body(event(), event())), headers={**TEXT, "content-encoding": "gzip"})
    assert r.status_code == 200 and r.json()["accepted"] == 2


def test_partial_batch_keeps_valid_events_and_stores_rejections(client):
    events = [
        event(),
        event(name="Bad Name"),
        event(level="urgent"),
        event(anonymous_id=...),
        event(props=[1, 2]),
        event(client_ts=1_764_230_000),  # seconds, not ms
        event(url="https://x/" + "a" * 3000),
        event(extra_field=1),
        event(event_id="not-a-uuid"),
        event(name="click\n"),  # a pattern ending in "$" let a trailing newline through
    ]
    r = client.post(URL, content=body(*events), headers=TEXT)
    assert r.status_code == 200
    answer = r.json()
    assert answer["accepted"] == 1
    errors = {e["index"]: e["error"] for e in answer["rejected"]}
    assert sorted(errors) == list(range(1, 10))
    assert "$.name" in errors[1] and '"Bad Name"' in errors[1]
    assert "Invalid enum value 'urgent'" in errors[2]
    assert "missing required field `anonymous_id`" in errors[3]
    assert "props: must be a JSON object" in errors[4]
    assert ">= 946684800000" in errors[5] and "1764230000" in errors[5]
    assert "length <= 2048" in errors[6]
    assert "unknown field `extra_field`" in errors[7]
    assert "$.event_id" in errors[8]
    assert "$.name" in errors[9]
    deliver(client)
    rejected = read_lake(client.settings.data_dir, "rejected")
    assert sorted(r["index"] for r in rejected) == list(range(1, 10))
    assert all(r["tenant"] == "shop" and r["reason"] and r["excerpt"] for r in rejected)


def test_props_over_the_limit_is_rejected_with_size_and_limit(client):
    big = {"blob": "x" * 17000}
    r = client.post(URL, content=body(event(), event(props=big)), headers=TEXT)
    [rej] = r.json()["rejected"]
    assert "limit 16384" in rej["error"] and "props" in rej["error"]


def test_tenant_schema_rejects_bad_props(make_client):
    schema = {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}, "price": {"type": "number", "minimum": 0}}}
    client = make_client({"schemas": [{"level": "mid", "name": "add_to_cart", "schema": schema}]})
    r = client.post(URL, content=body(
        event(name="add_to_cart", props={"sku": "A1", "price": 3}),
        event(name="add_to_cart", props={"price": -1, "sku": "A2"}),
        event(name="add_to_cart"),
        event(name="page_view", props={"anything": True}),
    ), headers=TEXT)
    answer = r.json()
    assert answer["accepted"] == 2
    errors = {e["index"]: e["error"] for e in answer["rejected"]}
    assert "mid/add_to_cart schema" in errors[1] and "price" in errors[1]
    assert "sku" in errors[2]


def test_schema_from_file_relative_to_config(make_client, tmp_path):
    (tmp_path / "signup.json").write_text('{"type": "object", "required": ["plan"]}')
    client = make_client({"schemas": [{"level": "mid", "name": "signup", "file": "signup.json"}]})
    r = client.post(URL, content=body(event(name="signup", props={"plan": "pro"}), event(name="signup", props={})), headers=TEXT)
    assert r.json()["accepted"] == 1


# -- whole requests refused ---------------------------------------------------------------


def test_batch_where_nothing_is_valid_is_400_and_kept(client):
    r = client.post(URL, content=body(event(level="x"), event(name="")), headers=TEXT)
    assert r.status_code == 400
    assert r.json()["accepted"] == 0 and len(r.json()["rejected"]) == 2
    deliver(client)
    assert len(read_lake(client.settings.data_dir, "rejected")) == 2


@pytest.mark.parametrize(
    ("content", "reason", "fragment"),
    [
        (b'{"sent_at": 1764230000000, "events": [', "invalid_json", "not valid JSON"),
        (b"\xff\xfe", "invalid_json", "not valid JSON"),
        (b'{"events": {"a": 1}}', "invalid_batch", "Expected `array`, got `object` - at `$.events`"),
        (b'{"sent_at": "yesterday", "events": []}', "invalid_batch", "$.sent_at"),
        (b'[1, 2]', "invalid_batch", "Expected `object`"),
        (b'{"sent_at": 1764230000000, "events": []}', "empty_batch", "no events"),
    ],
)
def test_malformed_batches_are_400_with_the_problem(client, content, reason, fragment):
    r = client.post(URL, content=content, headers=TEXT)
    assert r.status_code == 400
    assert r.json()["reason"] == reason
    assert fragment in r.json()["error"]


def test_malformed_batch_of_known_tenant_is_kept_in_rejected(client):
    client.post(URL, content=b'{"events": [oops', headers=TEXT)
    deliver(client)
    [row] = read_lake(client.settings.data_dir, "rejected")
    assert row["index"] == -1 and row["reason"] == "invalid_json" and row["excerpt"].startswith('{"events": [oops')


def test_unknown_or_missing_key_is_401(client):
    r = client.post("/v1/events?k=wk_nosuchkeynosuchkey", content=body(event()), headers=TEXT)
    assert r.status_code == 401 and r.json()["reason"] == "unknown_key"
    r = client.post("/v1/events", content=body(event()), headers=TEXT)
    assert r.status_code == 401 and r.json()["reason"] == "missing_key"
    r = client.post("/v1/events", content=body(event(), k="wk_nosuchkeynosuchkey"), headers=TEXT)
    assert r.status_code == 401


def test_disallowed_origin_is_403_readable_so_the_tracker_stops(make_client):
    client = make_client({"allowed_origins": ["https://shop.example"]})
    r = client.post(URL, content=body(event()), headers={**TEXT, "origin": "https://evil.example"})
    assert r.status_code == 403 and "evil.example" in r.json()["error"]
    assert r.headers["access-control-allow-origin"] == "https://evil.example"
    ok = client.post(URL, content=body(event()), headers={**TEXT, "origin": "https://shop.example"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"
    # A body key cannot bypass the origin check.
    r = client.post("/v1/events", content=body(event(), k=WRITE_KEY), headers={**TEXT, "origin": "https://evil.example"})
    assert r.status_code == 403


def test_preflight(make_client):
    client = make_client({"allowed_origins": ["https://shop.example"]})
    r = client.options(URL, headers={"origin": "https://shop.example", "access-control-request-method": "POST"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "content-type" in r.headers["access-control-allow-headers"]
    r = client.options(URL, headers={"origin": "https://evil.example", "access-control-request-method": "POST"})
    assert r.status_code == 403


def test_body_too_large_is_413(make_client):
    client = make_client(collector={"max_body_bytes": 2000})
    big = body(*[event(title="t" * 200) for _ in range(20)])
    r = client.post(URL, content=big, headers=TEXT)
    assert r.status_code == 413 and "limit 2000" in r.json()["error"]
    # A gzip bomb is measured after decompression.
    r = client.post(URL, content=gzip.compress(big), headers={**TEXT, "content-encoding": "gzip"})
    assert r.status_code == 413 and "decompressed" in r.json()["error"]


def test_too_many_events_is_413(client):
    r = client.post(URL, content=body(*[event() for _ in range(501)]), headers=TEXT)
    assert r.status_code == 413 and "501 events, limit 500" in r.json()["error"]
    assert client.post(URL, content=body(*[event() for _ in range(500)]), headers=TEXT).status_code == 200


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"content-type": "application/x-www-form-urlencoded"}, "content_type"),
        ({}, "content_type"),
        ({"content-type": "application/json", "content-encoding": "br"}, "content_encoding"),
    ],
)
def test_wrong_content_type_or_encoding_is_415(client, headers, reason):
    r = client.post(URL, content=body(event()), headers=headers)
    assert r.status_code == 415 and r.json()["reason"] == reason


def test_bad_gzip_is_400(client):
    r = client.post(URL, content=b"not gzip at all", headers={**TEXT, "content-encoding": "gzip"})
    assert r.status_code == 400 and r.json()["reason"] == "invalid_gzip"


def test_wrong_method_is_405(client):
    r = client.get(URL)
    assert r.status_code == 405 and "POST" in r.headers["allow"]


def test_backpressure_answers_503_with_retry_after(make_client):
    client = make_client(spool={"max_undelivered_bytes": 1, "retry_after_secs": 7, "min_free_disk_bytes": 0})
    assert client.post(URL, content=body(event()), headers=TEXT).status_code == 200
    client.portal.call(client.app.collector.writer.seal)
    client.app.collector._check_pressure()  # the housekeeping task does this every 250 ms
    r = client.post(URL, content=body(event()), headers={**TEXT, "origin": "https://shop.example"})
    assert r.status_code == 503 and r.headers["retry-after"] == "7"
    assert r.headers["access-control-expose-headers"] == "Retry-After"
    assert "max_undelivered_bytes" in r.json()["error"]
    assert client.get("/readyz").status_code == 503
    Deliverer(client.settings).run_once()
    client.app.collector._check_pressure()
    assert client.post(URL, content=body(event()), headers=TEXT).status_code == 200


def test_low_disk_answers_503(make_client):
    client = make_client(spool={"min_free_disk_bytes": 2**62})
    r = client.post(URL, content=body(event()), headers=TEXT)
    assert r.status_code == 503 and "min_free_disk_bytes" in r.json()["error"]


def test_spool_write_failure_is_503_not_an_ack(client, monkeypatch):
    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(client.app.collector.writer, "append", full)
    r = client.post(URL, content=body(event()), headers=TEXT)
    assert r.status_code == 503 and "No space left" in r.json()["error"] and "retry-after" in r.headers


def test_metrics_count_by_reason(client):
    client.post(URL, content=body(event(), event(level="x")), headers=TEXT)
    client.post("/v1/events?k=wk_nosuchkeynosuchkey", content=body(event()), headers=TEXT)
    text = client.get("/metrics").text
    assert "beaconlake_events_received_total 2" in text
    assert "beaconlake_events_accepted_total 1" in text
    assert 'beaconlake_events_rejected_total{reason="invalid_event"} 1' in text
    # A request refused as a whole is a request, not an event: it has its own counter.
    assert 'beaconlake_requests_refused_total{reason="unknown_key"} 1' in text
    assert 'beaconlake_events_rejected_total{reason="unknown_key"}' not in text
    assert 'beaconlake_requests_total{code="200"} 1' in text
    assert 'beaconlake_requests_total{code="401"} 1' in text
    assert 'beaconlake_request_duration_seconds_bucket{le="+Inf"} 2' in text


def test_health_and_ready(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_event_ids_are_stored_canonical_so_case_does_not_split_dedupe(client):
    eid = uuid.uuid4()
    client.post(URL, content=body(event(event_id=str(eid).upper())), headers=TEXT)
    assert deliver(client)[0]["event_id"] == str(eid)


def test_tracker_script_is_served_gzipped_when_asked(client):
    import gzip as gz

    plain = client.get("/beaconlake.js", headers={"accept-encoding": "identity"})
    packed = client.get("/beaconlake.js", headers={"accept-encoding": "gzip, br"})
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("application/javascript")
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.content == plain.content  # httpx decodes; the bytes on the wire were smaller
    assert len(gz.compress(plain.content, 9)) < len(plain.content) / 2
