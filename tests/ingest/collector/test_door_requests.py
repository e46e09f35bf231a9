"""Whole requests at the door: the client's address, the Origin, counters that add up."""

import logging

import pytest
from door_harness import PEER, TEXT, Door, body, event

from beaconlake import config
from beaconlake.errors import ConfigError
from beaconlake.ingest.collector.enrich import TrustedProxies, client_ip
from beaconlake.origins import canonical_origin

# -- finding 11: X-Forwarded-For through trusted proxies only ----------------------------------

PROXIES = TrustedProxies(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"])


@pytest.mark.parametrize(
    ("peer", "xff", "client"),
    [
        ("10.0.0.2", "198.51.100.7", "198.51.100.7"),
        # The left end is whatever the client wrote: the right-most untrusted hop is the client.
        ("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.1.1.1", "198.51.100.7"),
        ("10.0.0.2", "6.6.6.6,198.51.100.7,192.0.2.7,10.9.9.9", "198.51.100.7"),
        # A peer that is not our proxy: its header is not believed at all.
        ("198.51.100.99", "6.6.6.6", "198.51.100.99"),
        # Every hop trusted: the left-most is as far as the facts go.
        ("10.0.0.2", "10.3.3.3, 192.0.2.7", "10.3.3.3"),
        # Garbage in the chain: the last valid hop.
        ("10.0.0.2", "198.51.100.7, unknown", "10.0.0.2"),
        ("10.0.0.2", "6.6.6.6, not-an-ip, 10.1.1.1", "10.1.1.1"),
        ("10.0.0.2", ", ,", "10.0.0.2"),
        ("10.0.0.2", "6.6.6.6, " + "1" * 100, "10.0.0.2"),  # too long to be an address (and never cached)
        ("10.0.0.2", "", "10.0.0.2"),
        # Ports and brackets as some proxies write them; IPv6 and IPv4-mapped peers.
        ("10.0.0.2", "198.51.100.7:4711", "198.51.100.7"),
        ("2001:db8::1", "[2001:db8::2]:443, 2a00:1450::5", "2a00:1450::5"),
        ("::ffff:10.0.0.2", "198.51.100.7", "198.51.100.7"),
        # A peer that is no IP address (a unix socket) gives no address, whatever the header says.
        ("unix:/run/beaconlake.sock", "198.51.100.7", None),
        (None, "198.51.100.7", None),
    ],
)
def test_client_ip_walks_from_the_peer_leftwards(peer, xff, client):
    assert client_ip(peer, xff, PROXIES) == client


def test_without_trusted_proxies_the_header_is_ignored():
    assert client_ip("198.51.100.99", "6.6.6.6", TrustedProxies([])) == "198.51.100.99"


def test_deprecated_trust_forwarded_for_trusts_only_the_direct_peer(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        door = Door(tmp_path, server={"trust_forwarded_for": True}, collector={"anonymize_ip": False})
    assert "server.trusted_proxies" in caplog.text
    door.post(body(event()), headers={**TEXT, "x-forwarded-for": "6.6.6.6, 198.51.100.7"})
    assert [row["ip"] for row in door.spooled().rows] == ["198.51.100.7"]
    door.close()


def test_spoofed_left_entries_never_reach_the_lake(tmp_path):
    door = Door(tmp_path, server={"trusted_proxies": [PEER]})
    door.post(body(event()), headers={**TEXT, "x-forwarded-for": "6.6.6.6, 198.51.100.7"})
    assert [row["ip"] for row in door.spooled().rows] == ["198.51.100.0"]  # anonymised
    door.close()


@pytest.mark.parametrize("entry", ["10.0.0.300", "example.com", "10.0.0.0/33", ""])
def test_a_bad_trusted_proxy_is_a_config_error_naming_it(tmp_path, entry):
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies\[1\]: .* is not an IP address or CIDR"):
        config.parse({"server": {"trusted_proxies": ["10.0.0.1", entry]}}, tmp_path, environ={})


# -- finding 13: origins in one canonical form ---------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "canonical"),
    [
        ("https://shop.example", "https://shop.example:443"),
        ("HTTPS://Shop.EXAMPLE:443", "https://shop.example:443"),
        ("http://shop.example:80/", "http://shop.example:80"),
        ("https://bücher.example", "https://xn--bcher-kva.example:443"),
        ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example:443"),
        ("https://[2001:DB8::1]:8443", "https://[2001:db8::1]:8443"),
        ("null", None),
        ("https://shop.example/path", None),
        ("https://user@shop.example", None),
        ("https://shop.example:99999", None),
        ("https://sh op.example", None),
        ("https://shop.example\t", None),
        ("ftp://shop.example", None),
        ("https://😀.example", None),
        ("https://bÃ¼cher.example", None),  # UTF-8 read as Latin-1 on the way
        ("", None),
    ],
)
def test_canonical_origin(origin, canonical):
    assert canonical_origin(origin) == canonical


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("https://shop.example", 200),
        ("https://SHOP.example:443", 200),
        ("https://bücher.example", 200),  # the Unicode spelling of an allowed IDN host
        ("https://xn--bcher-kva.example", 200),
        ("https://shop.example:8443", 403),
        ("http://shop.example", 403),
        ("https://shöp.example", 403),
        ("https://shop.exämple", 403),
        ("https://bÃ¼cher.example", 403),
        ("https://shop.example/", 200),
        ("https://shop.example/x", 403),
        ("null", 403),
        ("", 403),
    ],
)
def test_origins_are_compared_canonically(tmp_path, origin, status):
    door = Door(tmp_path, tenant={"allowed_origins": ["https://shop.example", "https://Bücher.example"]})
    r = door.post(body(event()), headers={**TEXT, "origin": origin})
    assert r.status == status, r.body
    if status == 403:
        assert r.json["reason"] == "origin" and repr(origin) in r.json["error"]
    preflight = door.post(b"", headers={"origin": origin}, method="OPTIONS")
    assert preflight.status == (204 if status == 200 else 403)
    door.close()


def test_an_allowed_origin_that_is_not_one_is_a_config_error(tmp_path):
    raw = {"tenants": [{"id": "shop", "write_key": "wk_" + "a" * 20, "read_key": "rk_" + "a" * 20,
                        "allowed_origins": ["https://shop.example/checkout"]}]}
    with pytest.raises(ConfigError, match=r"tenants\.shop\.allowed_origins: 'https://shop.example/checkout' is not an origin; .* with no path"):
        config.parse(raw, tmp_path, environ={})


# -- counters: received = accepted + rejected; refused requests apart -----------------------------


def test_counters_add_up(tmp_path, monkeypatch):
    door = Door(tmp_path)
    door.post(body(event(), event(level="x"), event(props=[1])))  # 1 accepted, 2 rejected
    door.post(body(event(level="x")))  # judged: 1 rejected, and the request answered 400
    door.post(b'{"events": [oops')  # refused before any event is judged
    door.post(body(event()), query="k=wk_nosuchkeynosuchkey")
    door.post(body(*[event()] * 501))
    door.post(body(event()), headers={"content-type": "application/xml"})

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(door.writer, "append", full)
    assert door.post(body(event(), event())).status == 503  # not durable: not counted as received

    received = door.counter("beaconlake_events_received_total")
    accepted = door.counter("beaconlake_events_accepted_total")
    rejected = door.counter("beaconlake_events_rejected_total")
    assert (received, accepted, rejected) == (4, 1, 3)
    assert door.counter("beaconlake_events_rejected_total", reason="invalid_event") == 3
    refused = {reason: door.counter("beaconlake_requests_refused_total", reason=reason)
               for reason in ("invalid_events", "invalid_json", "unknown_key", "too_large", "content_type", "spool_unavailable")}
    assert refused == dict.fromkeys(refused, 1.0)
    assert door.counter("beaconlake_requests_refused_total") == 6
    assert door.counter("beaconlake_requests_total") == 7
    monkeypatch.undo()
    door.close()


def test_the_new_counter_is_on_metrics():
    from beaconlake.telemetry import HELP, Metrics

    assert HELP["beaconlake_requests_refused_total"][0] == "counter"
    m = Metrics()
    m.inc("beaconlake_requests_refused_total", reason="origin")
    assert 'beaconlake_requests_refused_total{reason="origin"} 1' in m.render()


def test_a_bug_is_a_500_with_a_json_body_never_an_exception(tmp_path, monkeypatch, caplog):
    door = Door(tmp_path)

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(door.endpoint, "scrub", broken)  # on every batch's way, fast path or not
    with caplog.at_level(logging.ERROR):
        r = door.post(body(event()))
    assert r.status == 500 and r.json["reason"] == "internal" and "retry later" in r.json["error"]
    assert "event endpoint failed" in caplog.text and "KeyError" in caplog.text
    assert door.counter("beaconlake_requests_refused_total", reason="internal") == 1
    assert door.spooled().rows == []
    monkeypatch.undo()
    door.close()
