"""Real Redis and PostgreSQL for the realtime tests, from the Debian packages.

Each is started once per test session, on a free port in a temporary folder, and stopped
at exit. Missing binaries skip with the Debian package to install (`make test` installs
them through scripts/system-deps).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time

import pytest
from support import free_port

_started: dict[str, str] = {}


def redis_url() -> str:
    if "redis" in _started:
        return _started["redis"]
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is missing: apt-get install redis-server")
    pytest.importorskip("redis", reason="pip install 'beaconlake[redis]'")
    folder = tempfile.mkdtemp(prefix="bl-redis-")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError(f"redis-server did not answer on port {port}")

    def stop() -> None:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(stop)
    _started["redis"] = f"redis://127.0.0.1:{port}/0"
    return _started["redis"]


def postgres_dsn() -> str:
    if "postgres" in _started:
        return _started["postgres"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is missing: apt-get install postgresql")
    pytest.importorskip("psycopg", reason="pip install 'beaconlake[postgres]'")
    bindir = os.path.dirname(found[-1])
    folder = tempfile.mkdtemp(prefix="bl-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        pw = pwd.getpwnam("postgres")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(folder, "data")
    port = free_port()
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, stdout=subprocess.DEVNULL)
    opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
    subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(folder, "log"), "-w",
                    "start"], check=True, stdout=subprocess.DEVNULL)

    def stop() -> None:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(stop)
    _started["postgres"] = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    return _started["postgres"]


def fresh_postgres_db() -> str:
    """A new, empty database on the session's server: tests do not see each other's rows."""
    import psycopg

    dsn = postgres_dsn()
    name = f"t{os.getpid()}_{time.time_ns()}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"create database {name}")
    return dsn.replace("dbname=postgres", f"dbname={name}")


def fresh_redis_db() -> tuple[str, str]:
    """The session's Redis and a key prefix no other test uses."""
    return redis_url(), f"t{time.time_ns() % 10**12}"
