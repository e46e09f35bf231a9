"""GET /v1/profiles/{id}, GET /v1/profiles, GET /v1/segments on the real collector app, over the
default simulation's profiles (SQLite store; the PostgreSQL store runs the store behaviour suite)."""

import pytest
from analyze_lake import OTHER_READ_KEY, READ_KEY
from starlette.testclient import TestClient

from beaconlake.serve.app import create_app

AUTH = {"authorization": f"Bearer {READ_KEY}"}


@pytest.fixture(scope="module")
def client(shop):
    with TestClient(create_app(shop.settings)) as c:
        yield c


def test_profile_by_person_user_or_anonymous_id(client, shop):
    user = next(d for d in shop.docs if d["user_id"])
    anon = next(d for d in shop.docs if not d["user_id"])
    for any_id in (user["person_id"], *user["anonymous_ids"]):
        r = client.get(f"/v1/profiles/{any_id}", headers=AUTH)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == user
    body = client.get(f"/v1/profiles/{anon['anonymous_ids'][0]}", headers=AUTH).json()
    assert set(body) == {"person_id", "tenant", "user_id", "anonymous_ids", "first_seen", "last_seen", "features",
                         "traits", "segment", "interests", "propensity", "high_level", "updated_at"}
    assert set(body["segment"]) == {"id", "label"} and set(body["propensity"]) == {"goal", "days", "probability"}
    assert all(0 <= t["score"] <= 1 for t in body["traits"].values() if t["score"] is not None)


def test_unknown_profile_is_404(client):
    r = client.get("/v1/profiles/nobody-here", headers=AUTH)
    assert r.status_code == 404 and r.json()["reason"] == "not_found" and "nobody-here" in r.json()["error"]


def test_read_key_required_and_tenant_bound(client, shop):
    pid = shop.docs[0]["person_id"]
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Bearer wk_shopshopshopshopshop"},
                    {"authorization": f"Basic {READ_KEY}"}):
        for path in (f"/v1/profiles/{pid}", "/v1/profiles", "/v1/segments"):
            r = client.get(path, headers=headers)
            assert r.status_code == 401 and r.json()["reason"] == "unauthorized", (path, headers)
    # the other tenant's key sees none of this tenant's profiles
    other = {"authorization": f"Bearer {OTHER_READ_KEY}"}
    assert client.get(f"/v1/profiles/{pid}", headers=other).status_code == 404
    assert client.get("/v1/profiles", headers=other).json() == {"profiles": [], "total": 0}
    assert client.get("/v1/segments", headers=other).json() == {"segments": []}


@pytest.mark.parametrize(("query", "param", "says"), [
    ("trait=engagement>>0.7", "trait", "engagement>0.7"),
    ("trait=charm>0.5", "trait", "engagement, decisiveness"),
    ("trait=engagement>1.5", "trait", "between 0 and 1"),
    ("sort=-height", "sort", "last_seen"),
    ("limit=0", "limit", "from 1 to 1000"),
    ("limit=5000", "limit", "from 1 to 1000"),
    ("offset=-1", "offset", "0 to 100000"),
    ("segment=cheap", "segment", "s1, s2"),
    ("q=" + "x" * 201, "q", "at most 200"),
])
def test_bad_parameters_are_400_with_value_and_limit(client, query, param, says):
    r = client.get(f"/v1/profiles?{query}", headers=AUTH)
    assert r.status_code == 400
    body = r.json()
    assert body["parameter"] == param and says in body["error"], body


def test_too_long_id_is_400(client):
    r = client.get("/v1/profiles/" + "x" * 129, headers=AUTH)
    assert r.status_code == 400 and "1 to 128" in r.json()["error"]


def test_list_filters(client, shop):
    r = client.get("/v1/profiles?trait=engagement>0.7&sort=-engagement&limit=20", headers=AUTH).json()
    expected = sum(1 for d in shop.docs if d["traits"]["engagement"]["score"] > 0.7)
    assert r["total"] == expected and len(r["profiles"]) == min(20, expected)
    scores = [p["traits"]["engagement"]["score"] for p in r["profiles"]]
    assert scores == sorted(scores, reverse=True) and min(scores) > 0.7

    seg = shop.docs[0]["segment"]["id"]
    r = client.get(f"/v1/profiles?segment={seg}&limit=1000", headers=AUTH).json()
    assert r["total"] == sum(1 for d in shop.docs if d["segment"]["id"] == seg)
    assert {p["segment"]["id"] for p in r["profiles"]} == {seg}

    r = client.get("/v1/profiles?q=sale&trait=price_sensitivity>=0.5&limit=1000", headers=AUTH).json()
    assert r["total"] > 0
    for p in r["profiles"]:
        assert p["traits"]["price_sensitivity"]["score"] >= 0.5
        assert "sale" in [i["category"] for i in p["interests"]] or "sale" in p["segment"]["label"]

    r = client.get("/v1/profiles?limit=3&offset=2&sort=last_seen", headers=AUTH).json()
    assert r["total"] == len(shop.docs) and len(r["profiles"]) == 3
    seen = [p["last_seen"] for p in r["profiles"]]
    assert seen == sorted(seen)


def test_segments(client, shop):
    segs = client.get("/v1/segments", headers=AUTH).json()["segments"]
    assert len(segs) == shop.summary.tenants[0].segments
    assert sum(s["size"] for s in segs) == len(shop.docs)
    sizes = [s["size"] for s in segs]
    assert sizes == sorted(sizes, reverse=True)
    for s in segs:
        assert set(s) == {"id", "label", "size", "centroid", "distinguishing"}
        assert 0 <= s["centroid"]["avg_scroll_pct"] <= 100  # feature units, not z-scores
        for d in s["distinguishing"]:
            assert set(d) >= {"feature", "value", "overall"} and d["value"] == s["centroid"][d["feature"]]
