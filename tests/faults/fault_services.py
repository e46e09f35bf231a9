"""Redis and PostgreSQL of our own, from the Debian packages, that a fault test can kill and
start again on the same port (``tests/realtime/servers.py`` shares one of each per session and
never stops them)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
from support import free_port


class RedisServer:
    def __init__(self) -> None:
        self.exe = shutil.which("redis-server")
        if self.exe is None:
            pytest.skip("redis-server is missing: apt-get install redis-server")
        pytest.importorskip("redis", reason="pip install 'beaconlake[redis]'")
        self.folder = tempfile.mkdtemp(prefix="bl-fault-redis-")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen([self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.folder],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.025)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def kill(self) -> None:
        """kill -9: what the OOM killer does; its data (kept in memory only) is gone with it."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


class PostgresServer:
    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            pytest.skip("PostgreSQL is missing: apt-get install postgresql")
        pytest.importorskip("psycopg", reason="pip install 'beaconlake[postgres]'")
        self.bindir = os.path.dirname(found[-1])
        self.folder = tempfile.mkdtemp(prefix="bl-fault-pg-")
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            pw = pwd.getpwnam("postgres")
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data = os.path.join(self.folder, "data")
        self.port = free_port()
        subprocess.run([*self.as_user, f"{self.bindir}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres",
                        "--no-sync"], check=True, stdout=subprocess.DEVNULL)
        self.start()

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=3"

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self.as_user, f"{self.bindir}/pg_ctl", "-D", self.data, *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", opts, "-l", os.path.join(self.folder, "log"), "-w", "start")

    def crash(self) -> None:
        """Stop without a checkpoint (``-m immediate``): every connection is cut, as in a crash."""
        self._ctl("-m", "immediate", "-w", "stop")

    def _processes(self) -> list[int]:
        """The postmaster, then its children (the backends serving each connection, the writers)."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            postmaster = int(f.readline())
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def freeze(self) -> None:
        """Hung (SIGSTOP to every process of it: a stuck server, a black-holed network): the
        kernel still accepts connections and acknowledges what is sent, and nothing answers.
        The postmaster first, so that it forks no process the list would miss."""
        os.kill(self._processes()[0], signal.SIGSTOP)
        for pid in self._processes()[1:]:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        subprocess.run([*self.as_user, f"{self.bindir}/pg_ctl", "-D", self.data, "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
