"""Run one collector node as deploy/ runs it, against the services it shares, and print what
happened as JSON.

    unshare --net --mount --fork python tests/deploy/node_scenario.py WORK_DIR ENV_JSON

Inside a network and mount namespace of its own (test_deploy_node.py starts it so): the names
the deployment's config uses (postgres, redis, minio) resolve to a private loopback through a
bind-mounted /etc/hosts, where a real PostgreSQL (password authentication, scram-sha-256), a real
Redis (requirepass) and moto's S3 (on MinIO's port 9000, its bucket made as the compose file's
bucket step makes it) listen on the ports the config names. `beaconlake up` is then started with
deploy/beaconlake.toml unchanged and the environment `docker compose config` gives collector-1
(ENV_JSON), plus the data folder (the container's volume) and a short flush interval.
"""

from __future__ import annotations

import glob
import io
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from deploy_artifacts import CONFIG  # noqa: E402

EVENTS, BATCH = 100, 5


def start_postgres(password: str) -> tuple[list[str], str, str]:
    """PostgreSQL on 127.0.0.1:5432 with password authentication only; a role and a database
    `beaconlake`, as the compose file's postgres service makes them."""
    bindir = os.path.dirname(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1])
    folder = tempfile.mkdtemp(prefix="bl-deploy-pg-")
    pw = pwd.getpwnam("postgres")
    os.chown(folder, pw.pw_uid, pw.pw_gid)
    as_user = ["runuser", "-u", "postgres", "--"]
    pwfile = os.path.join(folder, "pw")
    Path(pwfile).write_text(password + "\n")
    os.chown(pwfile, pw.pw_uid, pw.pw_gid)
    data = os.path.join(folder, "data")
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-U", "beaconlake", "--pwfile", pwfile,
                    "--auth", "scram-sha-256", "--no-sync"], check=True, stdout=subprocess.DEVNULL)
    opts = f"-p 5432 -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(folder, "log"), "-w", "start"],
                   check=True, stdout=subprocess.DEVNULL)
    env = {**os.environ, "PGPASSWORD": password}
    subprocess.run([f"{bindir}/createdb", "-h", "127.0.0.1", "-p", "5432", "-U", "beaconlake", "beaconlake"],
                   check=True, env=env)
    return as_user, bindir, data


def s3_rows(s3, bucket: str, prefix: str) -> int:
    import pyarrow.parquet as pq

    rows = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".parquet"):
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                rows += pq.read_table(io.BytesIO(body)).num_rows
    return rows


def main(work: Path, env: dict[str, str]) -> dict:
    import boto3
    import psycopg
    import redis
    from moto.server import ThreadedMotoServer

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    hosts = work / "hosts"
    hosts.write_text("127.0.0.1 localhost postgres redis minio\n")
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    out: dict = {}

    as_user, bindir, pgdata = start_postgres(env["PGPASSWORD"])
    redis_password = env["BEACONLAKE__COUNTERS__URL"].split(":", 2)[2].split("@")[0]
    redis_proc = subprocess.Popen(["redis-server", "--port", "6379", "--bind", "127.0.0.1", "--requirepass", redis_password,
                                   "--save", "", "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=9000, verbose=False)
    moto.start()
    up = None
    try:
        r = redis.Redis.from_url(env["BEACONLAKE__COUNTERS__URL"])
        for _ in range(200):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.025)
        # without the password the services refuse: the deployment's secrets are what let it in
        try:
            redis.Redis(host="redis", port=6379).ping()
            out["redis_without_password"] = "accepted"
        except redis.AuthenticationError as exc:
            out["redis_without_password"] = f"refused: {exc}"
        no_pw = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
        done = subprocess.run([sys.executable, "-c", "import psycopg; psycopg.connect('host=postgres dbname=beaconlake "
                               "user=beaconlake connect_timeout=3')"], env=no_pw, capture_output=True, text=True)
        out["postgres_without_password"] = done.returncode, done.stderr.strip().splitlines()[-1:]

        s3 = boto3.client("s3", endpoint_url="http://minio:9000", region_name="us-east-1",
                          aws_access_key_id=env["BEACONLAKE__STORAGE__ACCESS_KEY_ID"],
                          aws_secret_access_key=env["BEACONLAKE__STORAGE__SECRET_ACCESS_KEY"])
        s3.create_bucket(Bucket="beaconlake")  # the compose file's minio-init step

        data = work / "volume"
        data.mkdir()
        node_env = {**os.environ, **env, "BEACONLAKE__DATA_DIR": str(data), "BEACONLAKE__SPOOL__FLUSH_INTERVAL_SECS": "0.5",
                    "BEACONLAKE__DELIVERY__POLL_INTERVAL_SECS": "0.1",
                    # a collector node: the jobs role (convert on the S3 warehouse) is other parts' of issue 13
                    "BEACONLAKE__SCHEDULE__ENABLED": "false"}
        role = ["--role", "collector"] if os.environ.get("BL_DEPLOY_ROLE_FLAG") == "1" else []
        log = work / "up.log"
        up = subprocess.Popen([sys.executable, "-m", "beaconlake.cli", "up", "--config", str(CONFIG), *role], env=node_env,
                              cwd=work, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if up.poll() is not None:
                raise RuntimeError(f"beaconlake up exited with {up.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get("http://127.0.0.1:8080/readyz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after 60 s:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)

        write_key = env["BEACONLAKE__TENANTS__SHOP__WRITE_KEY"]
        read = {"Authorization": f"Bearer {env['BEACONLAKE__TENANTS__SHOP__READ_KEY']}"}
        with httpx.Client(base_url="http://127.0.0.1:8080", timeout=10) as client:
            codes = []
            for i in range(EVENTS // BATCH):
                body = {"sent_at": int(time.time() * 1000),
                        "events": [{"level": "mid", "name": "page_view", "anonymous_id": f"p{i}-{j}",
                                    "url": f"https://shop.example/p/{j}"} for j in range(BATCH)]}
                codes.append(client.post("/v1/events", params={"k": write_key}, json=body,
                                         headers={"Origin": "https://shop.example"}).status_code)
            out["codes"] = codes
            out["foreign_origin"] = client.post("/v1/events", params={"k": write_key}, json=body,
                                                headers={"Origin": "https://elsewhere.example"}).status_code
            deadline = time.monotonic() + 30
            while (rows := s3_rows(s3, "beaconlake", "lake/raw/tenant=shop/")) < EVENTS and time.monotonic() < deadline:
                time.sleep(0.3)
            out["s3_raw_rows"] = rows
            stats = client.get("/v1/stats", params={"name": "page_view", "by": "hour"}, headers=read)
            out["stats"] = [stats.status_code, sum(row["count"] for row in stats.json().get("rows", []))]
            out["redis_keys"] = len(r.keys("bl*"))
            hl = client.get("/v1/high-level", headers=read)
            out["high_level"] = [hl.status_code, hl.json()]
        os.environ.update(env)  # from here on, this process holds the node's secrets too
        with psycopg.connect("host=postgres dbname=beaconlake user=beaconlake", autocommit=True) as conn:
            out["postgres_tables"] = sorted(t for (t,) in conn.execute(
                "select tablename from pg_tables where schemaname = 'public'"))

        # the catalog and the profile store through the same secret, as the jobs role opens them
        from beaconlake import config
        from beaconlake.backends.catalog import open_catalog
        from beaconlake.backends.profiles import open_profiles

        settings = config.load(CONFIG)
        catalog = open_catalog(settings.catalog, settings.data_dir, settings.convert.warehouse_uri(settings.data_dir))
        catalog.create_namespace_if_not_exists("beaconlake")
        out["catalog_namespaces"] = [list(ns) for ns in catalog.list_namespaces()]
        profiles = open_profiles(settings.profiles)
        out["profiles_count"] = profiles.count("shop")
        profiles.close()

        up.send_signal(signal.SIGTERM)
        out["up_exit"] = up.wait(90)
        out["spool_left"] = sorted(p.name for p in (data / "spool").rglob("*.seg"))
        return out
    finally:
        if up is not None and up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        moto.stop()
        redis_proc.terminate()
        redis_proc.wait(10)
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", pgdata, "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(os.path.dirname(pgdata), ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()))))
