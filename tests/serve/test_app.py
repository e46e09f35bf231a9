"""The one app every server worker runs: what it mounts, the one key check, and the parts it
composes staying ignorant of each other."""

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from beaconlake import config
from beaconlake.serve.app import create_app

READ_API = ["/v1/stats", "/v1/high-level", "/v1/people/{person_id:any_path}/high-level"]
EVERY_PATH = [
    "/healthz", "/readyz", "/metrics", "/beaconlake.js", "/v1/config",  # the collector's side routes
    *READ_API,
    "/v1/profiles", "/v1/profiles/{person_id:any_path}", "/v1/segments",
    "/v1/erasures", "/v1/erasures/{request_id}",
    "/", "/dashboard/static", "/v1/dashboard/session", "/v1/dashboard/live", "/v1/dashboard/traffic",
    "/v1/dashboard/sequences", "/v1/dashboard/people", "/v1/dashboard/people/{person_id:any_path}",
    "/v1/dashboard/pipeline", "/v1/dashboard/pipeline/run",
]
TENANT = {"id": "t1", "write_key": "wk_aaaaaaaaaaaaaaaaaaaa", "read_key": "rk_aaaaaaaaaaaaaaaaaaaa"}


def paths(app) -> list[str]:
    return [r.path for r in app.web.routes if isinstance(r, (Route, Mount))]


@pytest.mark.parametrize("realtime", [True, False])
def test_one_route_table_for_every_part(tmp_path, realtime):
    settings = config.parse({"tenants": [TENANT], "realtime": {"enabled": realtime}}, tmp_path, environ={})
    app = create_app(settings)
    expected = EVERY_PATH if realtime else [p for p in EVERY_PATH if p not in READ_API]
    assert paths(app) == expected  # each once, the URLs they always had
    assert list(app.fast_routes()) == ["/v1/events"]  # not in the framework's table: answered before it


def test_the_event_endpoint_is_the_collectors_own_handler(tmp_path):
    # the fast path stays as lean as it was: the server calls the collector's handler, no layer between
    app = create_app(config.parse({"tenants": [TENANT]}, tmp_path, environ={}))
    handler = app.fast_routes()["/v1/events"]
    assert handler.__self__ is app.collector and handler.__func__ is type(app.collector)._post_events


def test_one_key_check_for_the_read_api_the_profiles_api_and_the_dashboard(tmp_path):
    app = create_app(config.parse({"tenants": [TENANT]}, tmp_path, environ={}))
    assert app.read_api.keys is app.profiles.keys is app.dashboard.keys
    with TestClient(app) as client:
        for path in ("/v1/stats?name=page_view", "/v1/profiles", "/v1/dashboard/traffic"):
            # the write key is no read key, wherever it is tried
            r = client.get(path, headers={"authorization": f"Bearer {TENANT['write_key']}"})
            assert (r.status_code, r.json()["reason"]) == (401, "unauthorized"), path
            r = client.get(path, headers={"authorization": f"Bearer {TENANT['read_key']}"})
            assert r.status_code == 200, (path, r.text)


# module -> the packages it must never import, not even lazily in a function
IGNORANT = {
    "beaconlake.ingest.collector.app": ("beaconlake.realtime", "beaconlake.serve", "beaconlake.up"),
    "beaconlake.realtime.worker": ("beaconlake.serve", "beaconlake.ingest.collector.app", "beaconlake.up"),
    "beaconlake.serve.dashboard.routes": ("beaconlake.serve.api", "beaconlake.ingest.collector.app", "beaconlake.up"),
    "beaconlake.serve.profiles": ("beaconlake.serve.api", "beaconlake.up"),
}


@pytest.mark.parametrize("module", sorted(IGNORANT))
def test_the_composed_parts_do_not_import_each_other(module):
    forbidden = IGNORANT[module]
    source = Path(importlib.util.find_spec(module).origin).read_text()
    tree = ast.parse(source)
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert [m for m in imported if m and m.startswith(forbidden)] == []
    code = f"import sys, json, {module}; print(json.dumps(sorted(m for m in sys.modules if m.startswith({forbidden!r}))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    # settings leaves (plain typed sections that config.py assembles) and the packages that hold
    # them are not the part itself
    assert [m for m in loaded if not (m.endswith(".settings") or f"{m}.settings" in loaded)] == []
