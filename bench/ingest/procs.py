"""The processes the benchmark starts, each in a session of its own: nginx and ``beaconlake up``.

Everything here can be stopped whatever state it is in (``stop_group`` resumes a paused
group before signalling it, then kills what is left), so the benchmark never leaves a
server behind, even on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import grp
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def group_pids(pgid: int) -> list[int]:
    """Every live process of a process group (the session we started it in)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                out.append(int(stat.parent.name))
    return sorted(out)


def cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    return 0.0


def process_name(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


def machine_cpu_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine has used (all cores): in processes, and in interrupts.

    Interrupt time (the loopback network's softirqs, mostly) is charged to no process.
    """
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + steal) / CLK_TCK, (irq + softirq) / CLK_TCK


def stop_group(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    """Send ``sig`` to the leader of a session we started, then make sure its whole group is gone."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc.poll() is None or group_pids(pgid)):
        time.sleep(0.1)
    if group_pids(pgid):
        print(f"  (process group {pgid} still alive {timeout:.0f}s after signal {sig}: SIGKILL)", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    proc.wait()


def wait_for(url: str, status: int, proc: subprocess.Popen, log: Path, timeout: float = 60.0, times: int = 1) -> None:
    """Poll ``url`` until it answers ``status`` ``times`` in a row (any worker may answer)."""
    deadline, streak = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            streak = streak + 1 if http_get(url, 1.0)[0] == status else 0
        except OSError:
            streak = 0
        if streak >= times:
            return
        time.sleep(0.05 if streak else 0.2)
    raise SystemExit(f"{url} did not answer {status} within {timeout:.0f}s; log:\n{log.read_text(errors='replace')[-4000:]}")


class Nginx:
    """nginx from a temp folder: its own config, port, logs and temp paths; never the system's."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.log = folder / "events.log"
        self.proc: subprocess.Popen | None = None
        self.binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
        if self.binary is None:
            raise SystemExit("nginx not found: apt-get install nginx (only its binary is used, not its config)")

    def config(self) -> str:
        f = self.folder
        user = ""
        if os.geteuid() == 0:  # as root, workers drop to an unprivileged user; the master opens the logs
            user = f"user nobody {'nogroup' if _group_exists('nogroup') else 'nobody'};"
        return f"""
{user}
worker_processes auto;
daemon off;
pid {f}/nginx.pid;
error_log {f}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  client_body_temp_path {f}/tmp/body;
  proxy_temp_path {f}/tmp/proxy;
  fastcgi_temp_path {f}/tmp/fastcgi;
  uwsgi_temp_path {f}/tmp/uwsgi;
  scgi_temp_path {f}/tmp/scgi;
  log_format body escape=json '$request_body';
  access_log off;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{self.port} backlog=4096;
    client_body_buffer_size 64k;
    client_max_body_size 1m;
    # `return 204` answers before the body is read, so it would log an empty body. The
    # mirror reads the body first (into memory: the buffer holds it); then empty_gif, which
    # touches no file, refuses the POST with 405, and error_page answers 204 instead,
    # writing the body to the log: one write(2) per request, as nginx does unbuffered.
    location = /v1/events {{
      mirror /_m;
      mirror_request_body on;
      empty_gif;
      error_page 405 =204 @ok;
    }}
    location @ok {{ access_log {self.log} body; return 204; }}
    location = /_m {{ internal; return 204; }}
    location = /ping {{ return 204; }}
  }}
}}
"""

    def start(self) -> None:
        (self.folder / "tmp").mkdir(parents=True, exist_ok=True)
        conf = self.folder / "nginx.conf"
        conf.write_text(self.config())
        args = [self.binary, "-p", str(self.folder), "-c", str(conf), "-e", str(self.folder / "error.log")]
        check = subprocess.run([*args, "-t", "-q"], capture_output=True, text=True)
        if check.returncode:
            raise SystemExit(f"nginx rejected the benchmark config:\n{check.stderr}")
        stderr = self.folder / "stderr.log"
        with open(stderr, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        wait_for(f"{self.url}/ping", 204, self.proc, stderr)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def roles(self) -> dict[int, str]:
        return {pid: "server" for pid in group_pids(self.proc.pid)}

    def take_log(self) -> tuple[int, bytes]:
        """Size and first line of the body log, then empty it (keeps the disk and the writeback small)."""
        size = self.log.stat().st_size if self.log.exists() else 0
        first = b""
        if size:
            with open(self.log, "rb") as fh:
                first = fh.readline()
            os.truncate(self.log, 0)  # nginx appends (O_APPEND): it carries on at offset 0
        return size, first.rstrip(b"\n")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, signal.SIGTERM, 10)
            self.proc = None


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


class Collector:
    """``beaconlake init`` + ``beaconlake up`` in a folder of its own, in a session of its own."""

    def __init__(self, folder: Path, workers: int, durability: str, source: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        """``source``: another tree's ``src/`` folder to run instead of the installed beaconlake;
        ``env``: settings overrides (``BEACONLAKE__...``) for this collector only."""
        self.folder, self.workers, self.durability, self.source = folder, workers, durability, source
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = folder / "collector.log"
        folder.mkdir(parents=True)
        cli = [sys.executable, "-m", "beaconlake.cli"]  # the `beaconlake` command, from this interpreter
        self.env = dict(os.environ)
        if source is not None:
            self.env["PYTHONPATH"] = str(source)
        self.env.update(env or {})
        init = subprocess.run([*cli, "init"], cwd=folder, capture_output=True, text=True, env=self.env)
        if init.returncode:
            raise SystemExit(f"beaconlake init failed:\n{init.stdout}{init.stderr}")
        self.config = folder / "beaconlake.toml"
        self.write_key = tomllib.loads(self.config.read_text())["tenants"][0]["write_key"]
        self.args = [*cli, "up", "--config", str(self.config), "--port", str(self.port), "--workers", str(workers)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(self.env)
        # The scheduler's convert runs (the first 30 s after start, then every 5 minutes, tens of
        # seconds each over this lake) would take CPU from the workers in some runs and not others.
        env["BEACONLAKE__SCHEDULE__ENABLED"] = "false"
        if self.durability != "fsync":  # fsync is the default; leave the config as `init` wrote it
            env["BEACONLAKE__SPOOL__DURABILITY"] = f'"{self.durability}"'
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.args, cwd=self.folder, env=env, stdout=subprocess.DEVNULL, stderr=log,
                                         start_new_session=True)
        wait_for(f"{self.url}/readyz", 200, self.proc, self.log, times=4 * self.workers)

    def roles(self) -> dict[int, str]:
        """server (the supervisor: ``beaconlake up`` itself), workers (``beaconlake.serve.http.worker``
        processes it starts), deliver (the deliverer) and schedule (the scheduler), spawned processes."""
        out = {}
        for pid in group_pids(self.proc.pid):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if pid == self.proc.pid:
                out[pid] = "server"
            elif b"beaconlake.serve.http.worker" in cmd:
                out[pid] = "workers"
            elif b"resource_tracker" in cmd:
                out[pid] = "other"
            elif b"spawn_main" in cmd:  # the deliverer, or the scheduler (off in this benchmark)
                out[pid] = "schedule" if process_name(pid) == "bl-schedule" else "deliver"
            else:  # a baseline's server may fork workers that keep the parent's command line
                out[pid] = "workers"
        return out

    def pause(self) -> None:
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def metrics(self) -> dict[str, float]:
        status, text = http_get(f"{self.url}/metrics", 5.0)
        if status != 200:
            raise SystemExit(f"/metrics answered {status}: {text[:500]}")
        out: dict[str, float] = {}
        for line in text.splitlines():
            m = re.match(r"^(beaconlake_\w+?)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
            if m:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        return out

    def delivery_progress(self, roles: dict[int, str]) -> tuple[float, float]:
        """(CPU seconds the deliver processes have used, events delivered to the lake), now."""
        cpu = sum(cpu_seconds(pid) for pid, role in roles.items() if role == "deliver")
        return cpu, self.metrics().get("beaconlake_events_delivered_total", 0.0)

    def wait_delivered(self, timeout: float = 120.0, backlog_bytes: int = 128 << 20) -> float:
        """Wait until lake delivery has caught up (at most ``backlog_bytes`` undelivered: the open
        segments are sealed only every flush_interval_secs), so that a run does not start against
        the previous runs' backlog (over ``spool.max_undelivered_bytes``, 1 GiB, the collector
        answers 503). Returns the seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.metrics().get("beaconlake_spool_undelivered_bytes", 0) <= backlog_bytes:
                break
            time.sleep(0.5)
        return time.monotonic() - t0

    def settled_metrics(self) -> dict[str, float]:
        """Other workers' counters reach /metrics through snapshots written about once a second."""
        last = self.metrics()
        for _ in range(20):
            time.sleep(1.2)
            now = self.metrics()
            if now.get("beaconlake_events_accepted_total") == last.get("beaconlake_events_accepted_total"):
                return now
            last = now
        return last

    def stop(self, timeout: float = 120.0) -> None:
        """SIGTERM: workers seal their segments, the deliverer drains them into the lake."""
        if self.proc is not None:
            stop_group(self.proc, signal.SIGTERM, timeout)
            self.proc = None

    def lake(self) -> dict[str, int]:
        import pyarrow.parquet as pq

        data = self.folder / "data"
        raw = list((data / "lake" / "raw").rglob("*.parquet"))
        by_level: dict[str, int] = {}
        for path in raw:
            level = next((part[6:] for part in path.parts if part.startswith("level=")), "?")
            by_level[level] = by_level.get(level, 0) + pq.read_metadata(path).num_rows
        return {
            # The load sends low and mid events; high-level ones are the server's own detections.
            "raw_rows": by_level.get("low", 0) + by_level.get("mid", 0),
            "raw_rows_by_level": by_level,
            "raw_files": len(raw),
            "rejected_rows": sum(pq.read_metadata(p).num_rows for p in (data / "lake" / "rejected").rglob("*.parquet")),
            "spool_segments_left": sum(1 for _ in (data / "spool").glob("*/*.seg")),
        }
