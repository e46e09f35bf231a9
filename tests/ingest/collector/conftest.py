import msgspec
import pytest
from starlette.testclient import TestClient

from beaconlake import config
from beaconlake.serve.app import create_app

WRITE_KEY = "wk_testtesttesttesttest"
READ_KEY = "rk_testtesttesttesttest"
OTHER_KEY = "wk_othertenantothertenant"


def tenant(**kw) -> dict:
    return {"id": "shop", "write_key": WRITE_KEY, "read_key": READ_KEY, **kw}


@pytest.fixture
def make_client(tmp_path):
    clients = []

    def make(tenant_overrides: dict | None = None, **sections) -> TestClient:
        raw = {
            "tenants": [
                tenant(**(tenant_overrides or {})),
                {"id": "other", "write_key": OTHER_KEY, "read_key": "rk_otherotherotherother"},
            ],
            "spool": {"min_free_disk_bytes": 0},
            **sections,
        }
        settings = config.parse(raw, tmp_path, environ={})
        client = TestClient(create_app(settings), client=("203.0.113.9", 50000), headers={"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"})
        client.__enter__()
        client.settings = settings
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


def event(**kw) -> dict:
    base = {"level": "mid", "name": "page_view", "anonymous_id": "anon-1", "client_ts": 1_764_230_000_000}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


def body(*events, sent_at=1_764_230_001_000, **extra) -> bytes:
    return msgspec.json.encode({"sent_at": sent_at, "events": list(events), **extra})
