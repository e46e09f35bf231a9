"""deploy/compose.yaml, checked by Docker Compose itself (`docker compose config`: interpolation,
merging, the Compose specification's schema), then for the topology the cluster needs: nodes
that share nothing on disk, secrets only from the environment, nginx in front of exactly the
collectors, the bucket the config names.

What cannot run here: `docker compose up` (no container runtime on this machine). The nginx
config is checked by nginx itself in tests/deploy/test_deploy_lb.py.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess

import pytest
import yaml
from deploy_artifacts import (
    COMPOSE,
    CONFIG_MOUNT,
    DEPLOY,
    ENV_EXAMPLE,
    NGINX_CONF,
    SPOOL_MOUNT,
    TEST_SECRETS,
    YAML_FILES,
    compose_config,
    deploy_settings,
    nginx_upstreams,
    tool,
    write_env_file,
)

from beaconlake.up import SCHEDULER_STOP_SECS


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    env_file = write_env_file(tmp_path_factory.mktemp("compose"), TEST_SECRETS)
    done = compose_config(env_file)
    assert done.returncode == 0, f"docker compose config refused deploy/compose.yaml:\n{done.stderr}"
    return json.loads(done.stdout)


def nodes(model, role):
    return {name: s for name, s in model["services"].items() if s.get("command") == ["--role", role]}


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert m and duration, f"unexpected duration {duration!r}"
    return int(m.group(1) or 0) * 60 + float(m.group(2) or 0)


def test_docker_compose_accepts_the_file_and_the_topology_is_the_clusters(model):
    collectors, jobs = nodes(model, "collector"), nodes(model, "jobs")
    assert len(collectors) >= 2 and len(jobs) == 2
    assert {"lb", "postgres", "redis", "minio", "minio-init"} <= set(model["services"])
    for name, service in {**collectors, **jobs}.items():
        assert service["hostname"] == name, f"{name}: its node id (the host name) must be stable"
        assert [c["target"] for c in service["configs"]] == [CONFIG_MOUNT]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        deps = service["depends_on"]
        assert deps["minio-init"]["condition"] == "service_completed_successfully", f"{name} starts before the bucket exists"
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"


def test_no_two_nodes_share_a_disk(model):
    """Each node's data folder (a collector's spool) is a volume of its own: two `up`s on one
    spool would be refused by its lock, and a shared disk is what issue 13 is about not needing."""
    sources = {}
    for name, service in {**nodes(model, "collector"), **nodes(model, "jobs")}.items():
        mounts = [v for v in service.get("volumes", []) if v["target"] == SPOOL_MOUNT]
        assert len(mounts) == 1 and mounts[0]["type"] == "volume", f"{name}: {SPOOL_MOUNT} is not a named volume"
        sources[name] = mounts[0]["source"]
    assert len(set(sources.values())) == len(sources), f"nodes share a data volume: {sources}"


def test_nodes_get_their_secrets_from_the_env_file(model):
    for name, service in {**nodes(model, "collector"), **nodes(model, "jobs")}.items():
        env = service["environment"]
        assert env["PGPASSWORD"] == TEST_SECRETS["POSTGRES_PASSWORD"]
        assert env["BEACONLAKE__STORAGE__SECRET_ACCESS_KEY"] == TEST_SECRETS["S3_SECRET_ACCESS_KEY"]
        assert env["BEACONLAKE__TENANTS__SHOP__READ_KEY"] == TEST_SECRETS["SHOP_READ_KEY"]
        assert env["BEACONLAKE__COUNTERS__URL"] == f"redis://:{TEST_SECRETS['REDIS_PASSWORD']}@redis:6379/0"
    assert model["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == TEST_SECRETS["POSTGRES_PASSWORD"]
    assert model["services"]["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == TEST_SECRETS["S3_SECRET_ACCESS_KEY"]


def test_the_compose_file_itself_holds_no_secret():
    raw = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = {**raw["services"], "x-beaconlake": raw["x-beaconlake"]}
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|_KEY|URL|MC_HOST", key):
                assert "${" in str(value), f"{name}.environment.{key} is written into compose.yaml, not taken from .env"
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"^[A-Z0-9_]+=", line))
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE.read_text(encoding="utf-8")))
    assert set(example) == required == set(TEST_SECRETS), "deploy/env.example and the variables compose.yaml requires differ"
    assert all(v == "" for v in example.values()), "deploy/env.example must not ship values"


def test_a_missing_secret_stops_compose_naming_it(tmp_path):
    for missing in ("POSTGRES_PASSWORD", "SHOP_READ_KEY"):
        env_file = write_env_file(tmp_path, {k: v for k, v in TEST_SECRETS.items() if k != missing})
        done = compose_config(env_file)
        assert done.returncode != 0
        assert f"set {missing} in deploy/.env" in done.stderr, done.stderr


def test_nginx_balances_over_exactly_the_collectors(model):
    collectors = nodes(model, "collector")
    upstreams = nginx_upstreams(NGINX_CONF.read_text(encoding="utf-8"))
    assert sorted(upstreams) == sorted(f"{name}:8080" for name in collectors)
    # nginx resolves its upstreams once: each collector keeps one address across recreations
    addresses = [s["networks"]["beaconlake"]["ipv4_address"] for s in collectors.values()]
    assert len(set(addresses)) == len(addresses)
    subnet = ipaddress.ip_network(model["networks"]["beaconlake"]["ipam"]["config"][0]["subnet"])
    assert all(ipaddress.ip_address(a) in subnet for a in addresses)


def test_the_collectors_trust_the_load_balancer_and_only_it(model):
    lb = model["services"]["lb"]["networks"]["beaconlake"]["ipv4_address"]
    assert deploy_settings()["server"]["trusted_proxies"] == [lb]


def test_the_bucket_step_makes_the_bucket_the_config_uses(model):
    cfg = deploy_settings()
    command = model["services"]["minio-init"]["command"]
    assert command[:2] == ["mb", "--ignore-existing"]
    assert command[2] == f"minio/{cfg['storage']['bucket']}"
    assert cfg["convert"]["warehouse"].startswith(f"s3://{cfg['storage']['bucket']}/")
    assert cfg["storage"]["endpoint_url"] == "http://minio:9000"


def test_the_stop_grace_covers_the_spool_drain(model):
    cfg = deploy_settings()
    needed = cfg["server"]["shutdown_timeout_secs"] + cfg["delivery"]["drain_timeout_secs"] + SCHEDULER_STOP_SECS
    for name, service in nodes(model, "collector").items():
        assert seconds(service["stop_grace_period"]) > needed, f"{name}: SIGKILL would cut the spool's drain short"


def test_yamllint_accepts_the_yaml():
    done = subprocess.run([tool("yamllint", "yamllint"), "-f", "parsable", "-c", str(DEPLOY / ".yamllint.yaml"),
                           *map(str, YAML_FILES)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
