"""What each key reaches, on every read and dashboard route, with two tenants holding real data.

A tenant's read key (and its admin key) reaches that tenant's data only: tenant B's ids, names,
counts and runs appear in no answer to tenant A. server.admin_key sees the server-wide Pipeline
view and no tenant's data. A run now needs an admin key: the tenant's runs that tenant alone.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from starlette.routing import Route
from two_tenants import RIVAL, SERVER_ADMIN, SHOP, TwoTenants, make

from beaconlake.schedule.run import coordination_of

# Query parameters a route needs to answer at all.
NEEDS = {"/v1/stats": {"name": "product_view"}}
SKIP = {"/v1/events", "/v1/config",  # the write side, keyed by the write key
        # an erasure's state: the tenant's admin key only, one tenant's requests unknown to the
        # other's key (tests/serve/test_erasures.py)
        "/v1/erasures/{request_id}"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> TwoTenants:
    w = make(tmp_path_factory.mktemp("two-tenants"))
    yield w
    w.client.__exit__(None, None, None)


def read_routes(world: TwoTenants) -> list[str]:
    """Every GET route of the app under /v1/, its person id filled with one of tenant A's."""
    paths = []
    for route in world.client.app.web.routes:
        if isinstance(route, Route) and route.path.startswith("/v1/") and route.path not in SKIP and "GET" in route.methods:
            paths.append(re.sub(r"\{person_id(:\w+)?\}", quote("shopper-2", safe=""), route.path))
    return paths


def get(world: TwoTenants, path: str, key: str | None, **params: str):
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return world.client.get(path, params={**NEEDS.get(path, {}), **params}, headers=headers)


def test_every_route_is_covered(world):
    # the list below grows with the app: a new route is checked without anyone adding it here
    paths = read_routes(world)
    assert {"/v1/stats", "/v1/high-level", "/v1/profiles", "/v1/segments", "/v1/dashboard/pipeline",
            "/v1/dashboard/session", "/v1/dashboard/live", "/v1/dashboard/people/shopper-2",
            "/v1/people/shopper-2/high-level", "/v1/profiles/shopper-2"} <= set(paths), paths


@pytest.mark.parametrize("key", [SHOP["read_key"], SHOP["admin_key"]], ids=["read_key", "admin_key"])
def test_tenant_a_sees_nothing_of_tenant_b_on_any_route(world, key):
    for path in read_routes(world):
        r = get(world, path, key)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        assert "rival" not in r.text.lower(), (path, r.text[:2000])
    # and B's people, asked for by their ids, are unknown to A's key
    for person in ("rival-person-1", "rival-user-1"):
        for path in (f"/v1/profiles/{person}", f"/v1/people/{person}/high-level", f"/v1/dashboard/people/{person}"):
            r = get(world, path, key)
            body = r.json()
            assert r.status_code == 404 or not any(body.get(k) for k in ("events", "sessions", "anonymous_ids", "high_level")), (
                path, r.text[:500])
            assert "rival" not in r.text.replace(person, "").lower(), (path, r.text[:500])  # only the id asked for


def test_the_tenant_pipeline_view_has_its_own_counts_and_runs_only(world):
    d = get(world, "/v1/dashboard/pipeline", SHOP["read_key"]).json()
    assert d["scope"] == "tenant" and d["tenant"] == "shop" and d["can_run"] is False
    assert d["counters"] == {"beaconlake_tenant_events_accepted_total": world.accepted["shop"],
                             "beaconlake_tenant_events_rejected_total": 0}
    assert d["rejected"] == {}
    # the run of every tenant is listed, without the server-wide figures; the rival's own run is not
    assert [r["run_id"] for r in d["runs"]] == [world.runs["all"]["run_id"]]
    [run] = d["runs"]
    assert run["events"] is None and run["new_files"] is None and run["trigger"] == "interval"
    assert [t["tenant"] for t in run["analyze"]["tenants"]] == ["shop"]
    assert "spool_undelivered_bytes" not in d and "tenants" not in d

    rival = get(world, "/v1/dashboard/pipeline", RIVAL["admin_key"]).json()
    assert rival["can_run"] is True and rival["rejected"] == {"schema": world.rejected["rival"]}
    assert rival["counters"]["beaconlake_tenant_events_accepted_total"] == world.accepted["rival"]
    own = next(r for r in rival["runs"] if r["run_id"] == world.runs["rival"]["run_id"])
    assert own["events"] == world.runs["rival"]["events"] > 0 and own["trigger"] == "requested (rival)"
    assert "shop" not in json.dumps(rival)


def test_the_server_admin_key_sees_the_server_and_no_tenant_data(world):
    d = get(world, "/v1/dashboard/pipeline", SERVER_ADMIN).json()
    assert d["scope"] == "server" and d["can_run"] is True
    assert d["tenants"]["shop"]["accepted"] == world.accepted["shop"]
    assert d["tenants"]["rival"] == {"accepted": world.accepted["rival"], "rejected": {"schema": 3}}
    assert d["counters"]["beaconlake_events_accepted_total"] == sum(world.accepted.values())
    assert {r["run_id"] for r in d["runs"]} == {world.runs["all"]["run_id"], world.runs["rival"]["run_id"]}
    for path in read_routes(world):
        if path == "/v1/dashboard/pipeline":
            continue
        r = get(world, path, SERVER_ADMIN)
        assert r.status_code == 403 and r.json()["reason"] == "forbidden", (path, r.text)


@pytest.mark.parametrize("key", [None, "", "rk_notakeynotakeynotakey", SHOP["write_key"]], ids=["none", "empty", "unknown", "write"])
def test_no_route_answers_without_a_known_key(world, key):
    for path in read_routes(world):
        r = get(world, path, key)
        assert r.status_code == 401 and r.json()["reason"] == "unauthorized", (path, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_a_run_now_needs_an_admin_key_and_runs_only_its_tenant(world):
    runs = coordination_of(world.settings).run_log()
    post = lambda key: world.client.post("/v1/dashboard/pipeline/run", headers={"authorization": f"Bearer {key}"} if key else {})
    assert post(None).status_code == 401
    assert post(SHOP["write_key"]).status_code == 401
    for key in (SHOP["read_key"], RIVAL["read_key"]):
        r = post(key)
        assert r.status_code == 403 and "admin key" in r.json()["error"]
    assert not runs.requested()

    r = post(SHOP["admin_key"])
    assert r.status_code == 200 and r.json()["tenants"] == ["shop"]
    assert runs.requested("shop") and not runs.requested("rival")
    assert get(world, "/v1/dashboard/pipeline", SHOP["read_key"]).json()["schedule"]["requested"] is True
    assert get(world, "/v1/dashboard/pipeline", RIVAL["read_key"]).json()["schedule"]["requested"] is False
    assert post(RIVAL["admin_key"]).status_code == 200
    assert runs.take_request() == ("requested (rival), requested (shop)", ["rival", "shop"])
    assert runs.take_request() is None

    assert post(SERVER_ADMIN).json()["tenants"] is None
    assert post(SHOP["admin_key"]).status_code == 200
    assert runs.take_request() == ("requested (server admin), requested (shop)", None)  # every tenant


def test_the_dashboard_session_says_who_signed_in(world):
    assert get(world, "/v1/dashboard/session", SHOP["read_key"]).json()["role"] == "read"
    assert get(world, "/v1/dashboard/session", SHOP["admin_key"]).json()["role"] == "admin"
    r = get(world, "/v1/dashboard/session", SERVER_ADMIN)
    assert r.status_code == 403 and "GET /v1/dashboard/pipeline" in r.json()["error"]


@settings(max_examples=200, deadline=None)
@given(header=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80))
def test_any_authorization_header_but_a_key_is_401(world, header):
    """Whatever the header holds (a key's prefix, a key with a byte changed, any scheme): 401."""
    r = world.client.get("/v1/dashboard/pipeline", headers={"authorization": header})
    known = {SHOP["read_key"], SHOP["admin_key"], RIVAL["read_key"], RIVAL["admin_key"], SERVER_ADMIN}
    scheme, _, key = header.partition(" ")
    if scheme.lower() == "bearer" and key.strip() in known:
        assert r.status_code == 200
    else:
        assert r.status_code == 401 and r.json()["reason"] == "unauthorized", header


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(SHOP["admin_key"]) - 1), char=st.characters(min_codepoint=33, max_codepoint=126))
def test_a_key_one_character_off_is_refused(world, cut, char):
    key = SHOP["admin_key"]
    near = key[:cut] + char + key[cut + 1:]
    # the keys differ only in their prefix: "r" for the "a" is the read key, a real key that may
    # not run (403, test_a_run_now_needs_an_admin_key_and_runs_only_its_tenant), not one off
    assume(near not in (SHOP["read_key"], SHOP["write_key"]))
    r = world.client.post("/v1/dashboard/pipeline/run", headers={"authorization": f"Bearer {near}"})
    assert r.status_code == (200 if near == key else 401)
    coordination_of(world.settings).run_log().take_request()  # leave no request behind for the other tests
