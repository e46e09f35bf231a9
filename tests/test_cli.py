import subprocess
import sys
import tomllib

import httpx
import pytest

from support import free_port, read_lake, start_collector


def run(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "beaconlake.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=env)


def test_init_writes_a_config_with_keys(tmp_path):
    r = run("init", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = tomllib.loads((tmp_path / "beaconlake.toml").read_text())
    assert cfg["tenants"][0]["write_key"] in r.stdout and cfg["tenants"][0]["admin_key"] in r.stdout
    again = run("init", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_up_without_a_config_says_what_to_do(tmp_path):
    r = run("up", cwd=tmp_path)
    assert r.returncode == 2
    assert "not found; run `beaconlake init`" in r.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["up", "--port", "http"], "port must be a whole number, got 'http'"),
    (["up", "--port", "70000"], "between 1 and 65535, got 70000"),
    (["up", "--workers", "0"], "expected at least 1, got 0"),
])
def test_bad_arguments_are_explained(tmp_path, args, message):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr


def test_up_refuses_an_invalid_schema_before_serving(tmp_path):
    run("init", cwd=tmp_path)
    path = tmp_path / "beaconlake.toml"
    path.write_text(path.read_text().replace('type = "object", required', 'type = "objekt", required'))
    r = run("up", "--port", str(free_port()), cwd=tmp_path)
    assert r.returncode == 2
    assert "tenants.demo.schemas (mid, add_to_cart): not a valid JSON Schema" in r.stderr


def test_env_override_reaches_the_server(tmp_path):
    import os

    run("init", cwd=tmp_path)
    port = free_port()
    env = {**os.environ, "BEACONLAKE__SPOOL__DURABILITY": '"nope"'}
    r = run("up", "--port", str(port), cwd=tmp_path, env=env)
    assert r.returncode == 2 and "Invalid enum value 'nope' - at `$.spool.durability`" in r.stderr


def test_deliver_command_drains_a_spool_left_behind(tmp_path):
    collector = start_collector(tmp_path, config_overrides={"spool": {"flush_interval_secs": 3600}})
    r = httpx.post(f"{collector.url}/v1/events?k={collector.write_key}", headers={"content-type": "application/json"},
                   content=b'{"events": [{"level": "mid", "name": "page_view", "anonymous_id": "x"}]}')
    assert r.status_code == 200
    collector.kill()  # the segment stays open in spool/new
    assert read_lake(collector.data_dir) == []
    r = run("deliver", "--config", str(collector.config_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "0 segment(s) left" in r.stdout
    assert [row["name"] for row in read_lake(collector.data_dir)] == ["page_view"]


def test_a_second_process_cannot_take_a_live_spool(tmp_path):
    collector = start_collector(tmp_path)
    try:
        r = run("deliver", "--config", str(collector.config_path), cwd=tmp_path)
        assert r.returncode == 2 and "in use by another beaconlake process" in r.stderr
        r = run("up", "--config", str(collector.config_path), "--port", str(free_port()), cwd=tmp_path)
        assert r.returncode == 2 and f"pid {collector.proc.pid}" in r.stderr
    finally:
        collector.stop()


def test_served_tracker_config_carries_sequences(tmp_path):
    collector = start_collector(tmp_path, config_overrides={"tenant": {"allowed_origins": ["https://shop.example"]}})
    try:
        r = httpx.get(f"{collector.url}/v1/config", params={"k": collector.write_key}, headers={"origin": "https://shop.example"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://shop.example"
        cfg = r.json()
        assert cfg["tenant"] == "demo"
        assert cfg["sequences"][0]["name"] == "considered_then_added"
        assert cfg["tracker"]["pointer_interval_ms"] == 100
        assert httpx.get(f"{collector.url}/v1/config", params={"k": "wk_wrongwrongwrongwrong"}).status_code == 401
        assert httpx.get(f"{collector.url}/v1/config", params={"k": collector.write_key},
                         headers={"origin": "https://evil.example"}).status_code == 403
    finally:
        collector.stop()
