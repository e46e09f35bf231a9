"""Run deploy/nginx/nginx.conf in front of three real `beaconlake up` collectors, inside a
network and mount namespace of its own, and print what happened as JSON.

    unshare --net --mount --fork python tests/deploy/lb_scenario.py WORK_DIR

It must run inside those namespaces (test_deploy_lb.py starts it so): it brings up a private
loopback, bind-mounts a hosts file that gives the compose service names (collector-1...) the
addresses 127.0.0.11-13, and binds port 8080 on them, none of which touches the machine's own
network. The one change to the shipped nginx.conf is its listen address (127.0.0.10 rather than
every address, which the collectors' port would collide with).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for support
sys.path.insert(0, str(HERE))

from deploy_artifacts import NGINX_CONF, nginx_upstreams  # noqa: E402
from support import write_config  # noqa: E402

LB = "127.0.0.10"
ACCEPTED = re.compile(r"^beaconlake_events_accepted_total(?:\{\})?\s+(\d+(?:\.\d+)?)$", re.M)


def accepted(address: str) -> int:
    text = httpx.get(f"http://{address}:8080/metrics", timeout=5).text
    m = ACCEPTED.search(text)
    return int(float(m.group(1))) if m else 0


def settled(addresses: dict[str, str], expected: int, timeout: float = 10.0) -> dict[str, int]:
    """Each node's accepted count, once their sum is ``expected`` (a worker publishes its counters
    to /metrics about once a second) or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        counts = {n: accepted(a) for n, a in addresses.items()}
        if sum(counts.values()) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def post(client: httpx.Client, key: str, n: int) -> list[int]:
    codes = []
    for i in range(n):
        body = {"sent_at": int(time.time() * 1000),
                "events": [{"level": "mid", "name": "page_view", "anonymous_id": f"a{i}", "url": "https://shop.example/"}] * 2}
        codes.append(client.post(f"http://{LB}:8080/v1/events", params={"k": key}, json=body).status_code)
    return codes


def main(work: Path) -> dict:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    hosts = work / "hosts"
    upstreams = [u.split(":")[0] for u in nginx_upstreams(NGINX_CONF.read_text())]
    addresses = {name: f"127.0.0.{11 + i}" for i, name in enumerate(upstreams)}
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in addresses.items()))
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)

    procs: list[subprocess.Popen] = []
    nodes: dict[str, subprocess.Popen] = {}
    keys: dict = {}
    try:
        for name, address in addresses.items():
            folder = work / name
            folder.mkdir()
            path = write_config(folder, 8080, {"server": {"host": address}, **({"tenant": keys} if keys else {})})
            if not keys:  # one tenant, the same keys on every node, as one config shared by a cluster
                t = tomllib.loads(path.read_text())["tenants"][0]
                keys = {k: t[k] for k in ("write_key", "read_key", "admin_key")}
            log = folder / "up.log"
            proc = subprocess.Popen([sys.executable, "-m", "beaconlake.cli", "up", "--config", str(path)], cwd=folder,
                                    stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(proc)
            nodes[name] = proc
            wait_ready(f"http://{address}:8080/readyz", proc, log)

        conf = work / "nginx.conf"
        text = NGINX_CONF.read_text()
        assert text.count("listen 8080;") == 1
        conf.write_text(text.replace("listen 8080;", f"listen {LB}:8080;"))
        nginx_log = work / "nginx.log"
        nginx = subprocess.Popen(["nginx", "-c", str(conf), "-g", f"daemon off; pid {work}/nginx.pid; error_log {nginx_log};"],
                                 stdout=open(nginx_log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(nginx)
        wait_ready(f"http://{LB}:8080/healthz", nginx, nginx_log)

        out: dict = {"nodes": list(addresses)}
        with httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            out["first_codes"] = post(client, keys["write_key"], 30)
            out["accepted_after_first"] = settled(addresses, 60)
            r = client.get(f"http://{LB}:8080/readyz")
            out["readyz"] = [r.status_code, r.json()]
            r = client.post(f"http://{LB}:8080/v1/events", params={"k": keys["write_key"]},
                            content=b"x" * (3 * 1024 * 1024), headers={"content-type": "text/plain"})
            out["over_lb_limit"] = [r.status_code, r.headers.get("content-type"), r.json()]
            r = client.post(f"http://{LB}:8080/v1/events", params={"k": keys["write_key"]},
                            content=b"x" * (1536 * 1024), headers={"content-type": "text/plain"})
            out["over_collector_limit"] = [r.status_code, r.json()]
            stopped = upstreams[1]
            nodes[stopped].send_signal(signal.SIGTERM)
            nodes[stopped].wait(60)
            out["stopped"] = stopped
            out["second_codes"] = post(client, keys["write_key"], 30)
            running = {n: a for n, a in addresses.items() if n != stopped}
            out["accepted_after_second"] = settled(running, 120 - out["accepted_after_first"][stopped])
        return out
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
