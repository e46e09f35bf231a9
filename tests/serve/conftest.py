import pytest
from realtime.servers import fresh_postgres_db, fresh_redis_db
from starlette.testclient import TestClient

from beaconlake import config
from beaconlake.serve.app import create_app

WRITE_KEY = "wk_testtesttesttesttest"
READ_KEY = "rk_testtesttesttesttest"
OTHER_WRITE = "wk_othertenantothertenant"
OTHER_READ = "rk_otherotherotherother"
SEQUENCES = [
    {"name": "considered_then_added", "within_secs": 600, "steps": [
        {"name": "product_view", "where": [{"field": "props.category", "op": "exists"}]},
        {"name": "product_view", "same": ["props.category"]},
        {"name": "add_to_cart"},
    ]},
]


@pytest.fixture(params=["embedded", "servers"])
def app(request, tmp_path):
    """The real collector app in process, on the embedded backends or on Redis + PostgreSQL."""
    sections = {}
    if request.param == "servers":
        url, prefix = fresh_redis_db()
        sections = {"counters": {"type": "redis", "url": url, "key_prefix": prefix},
                    "highlevel": {"type": "postgres", "dsn": fresh_postgres_db()}}
    raw = {
        "tenants": [
            {"id": "shop", "write_key": WRITE_KEY, "read_key": READ_KEY, "sequences": SEQUENCES},
            {"id": "other", "write_key": OTHER_WRITE, "read_key": OTHER_READ, "sequences": SEQUENCES},
        ],
        "spool": {"min_free_disk_bytes": 0},
        "realtime": {"browser_grace_secs": 0},
        **sections,
    }
    settings = config.parse(raw, tmp_path, environ={})
    client = TestClient(create_app(settings))
    with client:
        client.settings = settings
        yield client
