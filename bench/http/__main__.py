"""The HTTP server alone: beaconlake's server against granian's RSGI, the same trivial handler.

Both answer ``POST /v1/events`` by reading the body and returning a fixed 29-byte JSON, so
what differs is the server's own cost per request. One worker each, started side by side;
wrk (one thread, 2.3 KB bodies) runs against each in turn, the other paused with SIGSTOP.
Prints req/s and the server's CPU per request (microseconds, from /proc), medians of --runs.

    python bench/http                  # needs wrk, and granian for the reference (pip install granian)
    python bench/http --runs 5 --duration 10 --connections 256
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
ANSWER = b'{"accepted":10,"rejected":[]}'

OURS = f'''
import asyncio, socket, sys, uvloop
from beaconlake.serve.http.server import HttpServer, Limits

async def route(req):
    await req.read_body(1 << 20)
    return 200, [], {ANSWER!r}

async def main(port):
    limits = Limits(5, 10, 20, 16384, 1 << 20, 10000, 64 << 20, 10, 20, 5, 10)
    server = HttpServer({{"/v1/events": route}}, None, limits)
    await server.start(socket.create_server(("127.0.0.1", port), backlog=2048))
    await asyncio.Event().wait()

uvloop.run(main(int(sys.argv[1])))
'''

GRANIAN = f'''
class App:
    async def __rsgi__(self, scope, proto):
        await proto()
        proto.response_bytes(200, [("content-type", "application/json")], {ANSWER!r})

app = App()
'''

LUA = 'wrk.method = "POST"\nwrk.body = string.rep("x", 2300)\nwrk.headers["Content-Type"] = "text/plain"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def group(pgid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/http", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=64)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="beaconlake-bench-http-"))
    (tmp / "ours.py").write_text(OURS)
    (tmp / "granian_app.py").write_text(GRANIAN)
    (tmp / "post.lua").write_text(LUA)
    ports = {"beaconlake": free_port(), "granian": free_port()}
    cmds = {"beaconlake": [sys.executable, str(tmp / "ours.py"), str(ports["beaconlake"])],
            "granian": [sys.executable, "-m", "granian", "--interface", "rsgi", "--workers", "1", "--no-ws",
                        "--port", str(ports["granian"]), "--log-level", "warning", "granian_app:app"]}
    try:
        import granian  # noqa: F401
    except ImportError:
        print("granian is not installed (pip install granian): measuring beaconlake's server alone")
        del cmds["granian"]
    procs = {name: subprocess.Popen(cmd, cwd=tmp, start_new_session=True, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for name, cmd in cmds.items()}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in procs}
    try:
        for name, proc in procs.items():
            wait_listening(ports[name], proc)
        for run in range(1, args.runs + 1):
            for name, proc in procs.items():
                others = [o for o in procs.values() if o is not proc]
                for o in others:
                    os.killpg(o.pid, signal.SIGSTOP)
                pids = group(proc.pid)
                used, t0 = cpu_seconds(pids), time.monotonic()
                out = subprocess.run(["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration:g}s", "-s",
                                      str(tmp / "post.lua"), f"http://127.0.0.1:{ports[name]}/v1/events"],
                                     capture_output=True, text=True).stdout
                wall, used = time.monotonic() - t0, cpu_seconds(pids) - used
                for o in others:
                    os.killpg(o.pid, signal.SIGCONT)
                found = re.search(r"Requests/sec:\s+([\d.]+)", out)
                if not found or "Non-2xx" in out or "Socket errors" in out:
                    raise SystemExit(f"wrk against {name} failed or got errors:\n{out}")
                rps = float(found.group(1))
                per_request = used / (rps * wall) * 1e6
                results[name].append((rps, per_request))
                print(f"  run {run}/{args.runs}  {name:<10} {rps:>9,.0f} req/s  server {used / wall:.2f} cores  "
                      f"{per_request:6.1f} us/request", flush=True)
    finally:
        for proc in procs.values():
            for sig in (signal.SIGCONT, signal.SIGTERM):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    print(f"\nmedians of {args.runs} x {args.duration:g} s, {args.connections} connections:")
    for name, rows in results.items():
        print(f"  {name:<10} {statistics.median(r[0] for r in rows):>9,.0f} req/s  "
              f"{statistics.median(r[1] for r in rows):6.1f} us/request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
