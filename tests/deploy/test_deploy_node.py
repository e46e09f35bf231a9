"""A collector node as deploy/ runs it: `beaconlake up` with deploy/beaconlake.toml unchanged and
the environment `docker compose config` gives collector-1, against a real PostgreSQL and Redis
that demand their passwords and an S3 (moto, on MinIO's port), under the host names the config
uses, in a private network and mount namespace (node_scenario.py).

It proves what no schema check can: the secrets reach every service through the variables the
deployment sets (PGPASSWORD for every PostgreSQL URL, the Redis URL, the S3 keys, the tenant's
keys), events land in the S3 lake exactly once, the live statistics count them in Redis, the
read routes answer from PostgreSQL, the Iceberg SQL catalog opens on PostgreSQL, and SIGTERM
drains the spool. What it cannot prove: the image (no container runtime here); the jobs role on
the S3 warehouse (other parts of issue 13).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_artifacts import TEST_SECRETS, compose_config, write_env_file

from beaconlake import cli

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.slow


def has_role_flag() -> bool:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return "--role" in sub.choices["up"]._option_string_actions


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    for exe, package in (("redis-server", "redis-server"), ("unshare", "util-linux"), ("runuser", "util-linux")):
        if shutil.which(exe) is None:
            pytest.skip(f"needs {exe}: apt-get install {package}")
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("needs PostgreSQL: apt-get install postgresql")
    if os.geteuid() != 0:
        pytest.skip("needs root for a private network and mount namespace (unshare)")
    pytest.importorskip("moto.server", reason="needs moto[server] (in the test extra)")
    work = tmp_path_factory.mktemp("node")
    done = compose_config(write_env_file(work, TEST_SECRETS))
    assert done.returncode == 0, done.stderr
    env_json = work / "env.json"
    env_json.write_text(json.dumps(json.loads(done.stdout)["services"]["collector-1"]["environment"]))
    env = {**os.environ, "BL_DEPLOY_ROLE_FLAG": "1" if has_role_flag() else "0"}
    run = subprocess.run(["unshare", "--net", "--mount", "--fork", sys.executable, str(HERE / "node_scenario.py"),
                          str(work), str(env_json)], capture_output=True, text=True, timeout=280, check=False, env=env)
    assert run.returncode == 0, f"the node scenario failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_services_refuse_a_node_without_the_secrets(node):
    assert node["redis_without_password"].startswith("refused")
    code, message = node["postgres_without_password"]
    assert code != 0 and "password" in message[0]


def test_events_reach_the_s3_lake_exactly_once(node):
    assert node["codes"] == [200] * 20
    assert node["s3_raw_rows"] == 100
    assert node["foreign_origin"] == 403  # the config's allowed_origins are in force


def test_reads_answer_from_redis_and_postgresql(node):
    assert node["stats"] == [200, 100]
    assert node["redis_keys"] > 0
    status, body = node["high_level"]
    assert status == 200 and body["counts"] == {}
    assert "high_level_events" in node["postgres_tables"]


def test_the_catalog_and_profile_store_open_on_postgresql_with_the_same_secret(node):
    assert ["beaconlake"] in node["catalog_namespaces"]
    assert node["profiles_count"] == 0


def test_sigterm_drains_the_spool(node):
    assert node["up_exit"] == 0
    assert node["spool_left"] == []
