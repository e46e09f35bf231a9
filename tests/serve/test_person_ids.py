"""Person ids with characters a URL path cannot hold as they are (``/``, ``%``, ``?``, ``#``,
spaces, emoji) reach the person routes percent-encoded and are decoded exactly once: through
the ASGI app in process, and through a real ``beaconlake up``."""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import start_collector
from two_tenants import ODD_IDS, SHOP, TwoTenants, make, visit

from beaconlake import config

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> TwoTenants:
    w = make(tmp_path_factory.mktemp("person-ids"))
    yield w
    w.client.__exit__(None, None, None)


def person_paths(person_id: str) -> dict[str, str]:
    p = quote(person_id, safe="")  # what the dashboard page does: encodeURIComponent
    return {"dashboard": f"/v1/dashboard/people/{p}", "profile": f"/v1/profiles/{p}", "high_level": f"/v1/people/{p}/high-level"}


def check_person(get, person_id: str) -> None:
    paths = person_paths(person_id)
    d = get(paths["dashboard"])
    assert d.status_code == 200, (person_id, d.text)
    assert d.json()["person_id"] == person_id and d.json()["anonymous_ids"] == [person_id]
    assert [s["pages"][0]["path"] for s in d.json()["sessions"]] == ["/p/page_view"]
    prof = get(paths["profile"])
    assert prof.status_code == 200, (person_id, prof.text)
    assert prof.json()["anonymous_ids"] == [person_id]
    high = get(paths["high_level"])
    assert high.status_code == 200 and high.json()["person_id"] == person_id
    assert [e["name"] for e in high.json()["events"]] == ["considered_then_added"], (person_id, high.text)


@pytest.mark.parametrize("person_id", ODD_IDS)
def test_odd_ids_through_the_asgi_app(world, person_id):
    check_person(lambda path: world.client.get(path, headers={"authorization": f"Bearer {SHOP['read_key']}"}), person_id)


def test_an_id_that_is_too_long_is_400_naming_it(world):
    r = world.client.get(person_paths("x/" * 65)["profile"], headers={"authorization": f"Bearer {SHOP['read_key']}"})
    assert r.status_code == 400 and r.json()["parameter"] == "person_id" and "130 characters" in r.json()["error"]


def test_odd_ids_through_a_real_server(tmp_path):
    c = start_collector(tmp_path, config_overrides={"schedule": {"enabled": False}, "realtime": {"browser_grace_secs": 0},
                                                    "tenant": {"sequences": [{"name": "considered_then_added", "within_secs": 600, "steps": [
                                                        {"name": "product_view", "where": [{"field": "props.category", "op": "exists"}]},
                                                        {"name": "product_view", "same": ["props.category"]},
                                                        {"name": "add_to_cart", "where": [{"field": "props.sku", "op": "exists"}]}]}]}})
    try:
        tenant = config.load(c.config_path).tenants[0]
        now = int(time.time() * 1000) - 600_000
        events = [e for i, anon in enumerate(ODD_IDS) for e in visit(anon, now + i * 10_000, "shop.example")]
        r = httpx.post(f"{c.url}/v1/events?k={c.write_key}", json={"sent_at": int(time.time() * 1000), "events": events},
                       headers={"user-agent": BROWSER_UA})  # a client flagged as a bot gets no profile
        assert r.status_code == 200 and r.json()["rejected"] == [], r.text
        c.wait_delivered()
        auth = {"authorization": f"Bearer {tenant.admin_key}"}
        assert httpx.post(f"{c.url}/v1/dashboard/pipeline/run", headers=auth).status_code == 200
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            runs = httpx.get(f"{c.url}/v1/dashboard/pipeline", headers=auth).json()["runs"]
            if runs and runs[0]["status"] != "running":
                break
            time.sleep(0.3)
        assert runs and runs[0]["status"] == "ok", runs
        for person_id in ODD_IDS:
            check_person(lambda path: httpx.get(c.url + path, headers=auth), person_id)
    finally:
        c.stop()


@settings(max_examples=300, deadline=None)
@given(person_id=st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=128).filter(
    lambda s: s not in (".", "..")))  # dot segments: a URL path cannot carry them (see docs/realtime.md)
def test_any_id_reaches_the_handler_decoded_once(world, person_id):
    r = world.client.get(person_paths(person_id)["high_level"], headers={"authorization": f"Bearer {SHOP['read_key']}"})
    assert r.status_code == 200, (person_id, r.text)
    assert r.json()["person_id"] == person_id
