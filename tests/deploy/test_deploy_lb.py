"""deploy/nginx/nginx.conf, run by nginx (Debian's) in front of three real collectors.

Each test runs inside a network and mount namespace of its own (`unshare`, as root), where the
compose service names resolve to loopback addresses through a private /etc/hosts: the shipped
config is used as it is, apart from its listen address (lb_scenario.py says why).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_artifacts import NGINX_CONF, nginx_upstreams

HERE = Path(__file__).resolve().parent


def namespaces_available() -> None:
    if shutil.which("nginx") is None:
        pytest.skip("needs nginx: apt-get install nginx")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private network and mount namespace")
    probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"unshare --net --mount is not permitted here: {probe.stderr.strip()}")


def test_nginx_accepts_the_config(tmp_path):
    namespaces_available()
    hosts = tmp_path / "hosts"
    names = [u.split(":")[0] for u in nginx_upstreams(NGINX_CONF.read_text())]
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.{11 + i} {n}\n" for i, n in enumerate(names)))
    script = (f"mount --bind {hosts} /etc/hosts && "
              f"nginx -t -c {NGINX_CONF} -g 'pid {tmp_path}/nginx.pid; error_log stderr;'")
    done = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and "test is successful" in done.stderr, done.stderr


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    namespaces_available()
    work = tmp_path_factory.mktemp("lb")
    done = subprocess.run(["unshare", "--net", "--mount", "--fork", sys.executable, str(HERE / "lb_scenario.py"), str(work)],
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, f"the scenario failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_requests_are_spread_round_robin_over_every_collector(scenario):
    assert scenario["first_codes"] == [200] * 30
    counts = scenario["accepted_after_first"]
    assert set(counts) == set(scenario["nodes"]) and sum(counts.values()) == 60  # 30 batches of 2 events
    # each nginx worker keeps its own round-robin turn: even, give or take a worker's
    assert all(c >= 10 for c in counts.values()), counts
    assert scenario["readyz"] == [200, {"status": "ready"}]


@pytest.mark.slow
def test_a_stopped_collector_is_passed_over_without_a_failed_request(scenario):
    """A POST that could not reach a collector (connection refused) goes to the next one; the
    stopped collector gets nothing more and every event is accepted once."""
    assert scenario["second_codes"] == [200] * 30
    before, after = scenario["accepted_after_first"], scenario["accepted_after_second"]
    assert scenario["stopped"] not in after
    assert sum(after.values()) - sum(c for n, c in before.items() if n in after) == 60


@pytest.mark.slow
def test_oversized_bodies_get_a_json_413_naming_the_limit(scenario):
    code, content_type, body = scenario["over_lb_limit"]
    assert (code, content_type, body["reason"]) == (413, "application/json", "too_large")
    assert "2097152" in body["error"]
    # between the collector's limit and the load balancer's: the collector answers, with its own
    code, body = scenario["over_collector_limit"]
    assert code == 413 and body["reason"] == "too_large" and "1048576" in body["error"]
