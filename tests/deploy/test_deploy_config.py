"""deploy/beaconlake.toml is a config beaconlake accepts, holds no secret, and every environment
variable the deployment sets names a real key.

A config the product would reject is a defect of the deployment: these tests load it with
beaconlake's own loader (config.load), whose sections refuse unknown keys, so a misspelt key or
environment variable fails here rather than at a cluster's start.
"""

from __future__ import annotations

import argparse
import re
import shlex
from urllib.parse import urlparse

import pytest
from deploy_artifacts import CHART, CONFIG, CONFIG_MOUNT, DOCKERFILE, SPOOL_MOUNT, documented_env_names, env_for

from beaconlake import cli, config
from beaconlake.errors import ConfigError
from beaconlake.sections import type_of

SECRET_ENV = documented_env_names(CONFIG.read_text(encoding="utf-8"))


def load(environ: dict[str, str]) -> config.Settings:
    return config.load(CONFIG, environ=environ)


def test_the_config_documents_the_secrets_it_leaves_out():
    for name in ("PGPASSWORD", "BEACONLAKE__COUNTERS__URL", "BEACONLAKE__STORAGE__SECRET_ACCESS_KEY",
                 "BEACONLAKE__TENANTS__SHOP__WRITE_KEY", "BEACONLAKE__TENANTS__SHOP__READ_KEY"):
        assert name in SECRET_ENV, f"{name} is not among the variables deploy/beaconlake.toml documents"


def test_the_cluster_config_loads_with_its_secrets_from_the_environment():
    env = env_for(SECRET_ENV)
    s = load(env)
    # the cluster's seams, as the brief of issue 13 names them
    assert s.data_dir == SPOOL_MOUNT
    assert (s.server.host, s.server.port) == ("0.0.0.0", 8080)
    assert type_of(s.storage) == "s3" and s.storage.endpoint_url == "http://minio:9000"
    assert s.storage.secret_access_key == env["BEACONLAKE__STORAGE__SECRET_ACCESS_KEY"]
    assert type_of(s.counters) == "redis" and s.counters.url == env["BEACONLAKE__COUNTERS__URL"]
    assert type_of(s.highlevel) == "postgres" and type_of(s.profiles) == "postgres"
    assert type_of(s.coordination) == "postgres" and s.coordination.heartbeat_secs < s.coordination.lease_secs
    assert type_of(s.catalog) == "sql" and s.catalog.uri.startswith("postgresql+psycopg://")
    # the tables on the same bucket as the lake, so every node and engine reads them
    assert s.convert.warehouse_uri(s.data_dir) == f"s3://{s.storage.bucket}/warehouse"
    tenant = s.tenants[0]
    assert tenant.write_key == env["BEACONLAKE__TENANTS__SHOP__WRITE_KEY"]
    assert tenant.read_key == env["BEACONLAKE__TENANTS__SHOP__READ_KEY"]
    assert s.server.admin_key == env["BEACONLAKE__SERVER__ADMIN_KEY"]


def test_the_file_holds_no_secret():
    # only what the loader cannot do without (a tenant's two required keys): the rest is the file's
    s = load(env_for([n for n in SECRET_ENV if n.endswith(("__WRITE_KEY", "__READ_KEY"))]))
    for where, url in (("counters.url", s.counters.url), ("coordination.url", s.coordination.url),
                       ("catalog.uri", s.catalog.uri)):
        assert urlparse(url).password is None, f"{where} carries a password in deploy/beaconlake.toml"
    for where, dsn in (("highlevel.dsn", s.highlevel.dsn), ("profiles.dsn", s.profiles.dsn)):
        assert "password" not in dsn, f"{where} carries a password"
    assert s.storage.access_key_id is None and s.storage.secret_access_key is None
    text = CONFIG.read_text(encoding="utf-8")
    assert not re.search(r"^\s*(write_key|read_key|admin_key|secret_access_key|access_key_id)\s*=", text, re.M)


def test_without_the_secrets_the_config_is_refused_naming_the_missing_key():
    with pytest.raises(ConfigError, match="write_key"):
        load({})


def test_a_misspelt_environment_variable_is_refused():
    """The check the two tests above rely on: the loader refuses a variable that names no key."""
    env = env_for(SECRET_ENV) | {"BEACONLAKE__STORAGE__SECRET_ACESS_KEY": "x"}
    with pytest.raises(ConfigError, match="secret_acess_key"):
        load(env)


def test_sequences_are_detected_from_the_lake():
    """Several nodes: one detector over every node's raw files, not one per deliverer (which the
    loader refuses for a shared coordination anyway)."""
    s = load(env_for(SECRET_ENV))
    assert s.realtime.sequences_from == "lake"
    assert 'sequences_from = "lake"' in (CHART / "values.yaml").read_text(encoding="utf-8")


def _up_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["up"]


def _dockerfile_exec(instruction: str) -> list[str]:
    m = re.search(rf"^{instruction}\s+(\[.*\])\s*$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert m, f"the Dockerfile has no exec-form {instruction}"
    import json

    return json.loads(m.group(1))


@pytest.mark.parametrize("role", ["all", "collector", "jobs"])
def test_the_image_command_line_parses(role):
    entry = _dockerfile_exec("ENTRYPOINT")
    assert entry[:2] == ["tini", "--"], "tini must be PID 1, so SIGTERM reaches `up` and zombies are reaped"
    assert entry[2:4] == ["beaconlake", "up"] and CONFIG_MOUNT in entry
    up = _up_parser()
    assert "--role" in up._option_string_actions
    args = cli.build_parser().parse_args([*entry[3:], "--role", role])
    assert args.role == role and args.config == CONFIG_MOUNT
    default = cli.build_parser().parse_args([*entry[3:], *_dockerfile_exec("CMD")])
    assert default.role == "all"


def test_the_config_mount_is_where_the_entrypoint_reads_it():
    assert shlex.join(_dockerfile_exec("ENTRYPOINT")).endswith(f"--config {CONFIG_MOUNT}")
