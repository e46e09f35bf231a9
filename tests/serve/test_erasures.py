"""The erasure API: a tenant's admin key asks, for its own tenant only; bad requests say why."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from beaconlake import config
from beaconlake.serve.app import create_app

SHOP = {"id": "shop", "write_key": "wk_shopshopshopshopshop", "read_key": "rk_shopshopshopshopshop",
        "admin_key": "ak_shopshopshopshopshop"}
RIVAL = {"id": "rival", "write_key": "wk_rivalrivalrivalrival", "read_key": "rk_rivalrivalrivalrival",
         "admin_key": "ak_rivalrivalrivalrival"}
SERVER_ADMIN = "sk_serverserverserverserver"


@pytest.fixture
def client(tmp_path):
    settings = config.parse({"tenants": [SHOP, RIVAL], "server": {"admin_key": SERVER_ADMIN},
                             "spool": {"min_free_disk_bytes": 0}}, tmp_path, environ={})
    with TestClient(create_app(settings)) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_an_admin_key_records_an_erasure_of_its_own_tenant(client):
    r = client.post("/v1/erasures", json={"persons": ["person-zq", "user-zq"]}, headers=bearer(SHOP["admin_key"]))
    assert r.status_code == 202 and r.headers["location"] == f"/v1/erasures/{r.json()['id']}"
    shown = client.get(r.headers["location"], headers=bearer(SHOP["admin_key"])).json()
    assert shown["state"] == "pending" and shown["tenant"] == "shop" and "zq" not in str(shown)
    # the rival's admin key does not see it; read keys and the server's key cannot ask at all
    assert client.get(r.headers["location"], headers=bearer(RIVAL["admin_key"])).status_code == 404
    assert client.post("/v1/erasures", json={"person": "a1"}, headers=bearer(SHOP["read_key"])).status_code == 403
    assert client.post("/v1/erasures", json={"person": "a1"}, headers=bearer(SERVER_ADMIN)).status_code == 403
    assert client.post("/v1/erasures", json={"person": "a1"}).status_code == 401


@pytest.mark.parametrize(("body", "says"), [
    (b"not json", "not JSON"),
    (b'{"person": ' + b"[" * 5000 + b"}", "not JSON"),  # found from outside: deep nesting was a 500
    (b'{"who": "a1"}', '{"person": "<id>"}'),
    (b'{"person": "a1", "persons": ["b"]}', "no other key"),
    (b'{"person": ""}', "non-blank string"),
    (b'{"persons": []}', "name the person"),
    (b'{"person": "' + b"x" * 129 + b'"}', "at most 128 characters"),
    (b'{"persons": [' + b",".join(b'"p%d"' % i for i in range(101)) + b"]}", "at most 100"),
])
def test_a_bad_request_gets_a_400_that_says_why(client, body, says):
    r = client.post("/v1/erasures", content=body, headers=bearer(SHOP["admin_key"]))
    assert r.status_code == 400 and says in r.json()["error"], r.text


def test_unknown_and_malformed_request_ids(client):
    assert client.get("/v1/erasures/" + "0" * 32, headers=bearer(SHOP["admin_key"])).status_code == 404
    r = client.get("/v1/erasures/../etc", headers=bearer(SHOP["admin_key"]))
    assert r.status_code in (400, 404)
    assert client.get("/v1/erasures/abc", headers=bearer(SHOP["admin_key"])).status_code == 400
