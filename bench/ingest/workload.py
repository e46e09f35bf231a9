"""The load: tracker-like request bodies, the wrk script that sends them, one wrk run.

wrk rotates pre-formatted requests over a few dozen distinct bodies (fresh uuid4 event
ids, a page view with its context, then clicks, scrolls, link clicks and add-to-carts),
so the collector cannot profit from identical bodies. Each run also measures the CPU
that the server's processes, wrk, and everything else on the machine used meanwhile.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import resource
import signal
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from procs import cpu_seconds, machine_cpu_seconds, stop_group

EVENTS_PER_BATCH = 10

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
]
PAGES = [  # path, title, referrer
    ("/", "Trailhead – outdoor gear for every season", "https://www.google.com/"),
    ("/c/running/shoes?sort=popular", "Running shoes | Trailhead", "https://shop.example/"),
    ("/p/ultra-trail-42-gtx?color=blue", "Ultra Trail 42 GTX – blue | Trailhead", "https://shop.example/c/running/shoes"),
    ("/p/merino-base-layer-m", "Merino base layer, men | Trailhead", "https://duckduckgo.com/"),
    ("/search?q=waterproof+jacket", "Search: waterproof jacket | Trailhead", "https://shop.example/c/jackets"),
    ("/cart", "Your cart | Trailhead", "https://shop.example/p/ultra-trail-42-gtx?color=blue"),
]
TARGETS = ["a.card", "button#add", "nav a", "img.main", "li.size"]
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def make_batch(rng: random.Random, now_ms: int) -> bytes:
    """One tracker batch: a page view with its context, then what the visitor did on the page."""
    path, title, referrer = rng.choice(PAGES)
    anon, session = "".join(rng.choices(ALNUM, k=16)), "".join(rng.choices(ALNUM, k=10))
    t = now_ms - rng.randrange(2_000, 30_000)

    def event(level: str, name: str, props: dict, **extra: object) -> dict:  # fields of DESIGN.md
        nonlocal t
        t += rng.randrange(40, 900)
        ev = {"event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "level": level, "name": name,
              "anonymous_id": anon, "session_id": session, "client_ts": t, **extra, "props": props}
        return ev

    events = [event("mid", "page_view", {"path": path.split("?")[0]}, url="https://shop.example" + path, title=title,
                    referrer=referrer, context={
                        "locale": rng.choice(["en-US", "fr-FR", "de-DE"]),
                        "tz": rng.choice(["Europe/Paris", "America/New_York"]),
                        "screen": "1920x1080", "viewport": rng.choice(["1280x720", "390x844"]),
                        "library": "beaconlake.js/0.1.0"})]
    while len(events) < EVENTS_PER_BATCH:
        roll = rng.random()
        if roll < 0.35:
            events.append(event("low", "click", {"x": rng.randrange(1280), "y": rng.randrange(2000), "el": rng.choice(TARGETS)}))
        elif roll < 0.8:
            events.append(event("low", "scroll", {"depth": rng.randrange(0, 101, 5)}))
        elif roll < 0.9:
            events.append(event("mid", "link_click", {"href": "/p/" + "".join(rng.choices(ALNUM[:26], k=8)), "text": "See details"}))
        else:  # checked against the demo tenant's JSON Schema for (mid, add_to_cart)
            events.append(event("mid", "add_to_cart", {"sku": "UT42-" + "".join(rng.choices(ALNUM[26:], k=4)), "price": 129.9, "qty": 1}))
    body = {"sent_at": t + rng.randrange(5, 200), "events": events}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def segment_body(native: bytes) -> bytes:
    """The same events as a Segment ``/v1/batch`` body, as analytics.js would describe them: the
    page view as a ``page`` call, every other event as a ``track`` call, same ids and times."""
    body = json.loads(native)
    batch = []
    for ev in body["events"]:
        context = ev.get("context") or {}
        msg = {"messageId": ev["event_id"], "anonymousId": ev["anonymous_id"], "timestamp": _iso(ev["client_ts"]),
               "context": {"library": {"name": "analytics.js", "version": "npm:next-1.84.3"},
                           **({"locale": context["locale"], "timezone": context["tz"],
                               "screen": dict(zip(("width", "height"), map(int, context["screen"].split("x"))))}
                              if context else {})}}
        if ev["name"] == "page_view":
            msg.update(type="page", name=ev.get("title"),
                       properties={**ev["props"], "url": ev.get("url"), "title": ev.get("title"), "referrer": ev.get("referrer")})
        else:
            msg.update(type="track", event=ev["name"], properties=ev["props"])
        batch.append(msg)
    out = {"batch": batch, "sentAt": _iso(body["sent_at"])}
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()


def make_bodies(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    return [make_batch(rng, now_ms) for _ in range(count)]


def lua_script(bodies: list[bytes], path: str, headers: dict[str, str] | None = None) -> str:
    """wrk script: pre-formatted requests rotated per request; stats printed as one JSON line.
    ``headers`` replace or add to the tracker's (a Segment load's content type and Basic auth)."""
    headers = {"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://shop.example", **(headers or {})}
    lines = ["local bodies = {"]
    for b in bodies:
        text = b.decode()
        assert "]==]" not in text
        lines.append(f"[==[{text}]==],")
    lines.append("}")
    lines.append("local agents = {" + ",".join(f'"{ua}"' for ua in USER_AGENTS) + "}")
    lines.append(f'local path = "{path}"')
    lua_headers = ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items())
    lines.append(r'''
local reqs, n, i, next_no = {}, 0, 0, 0
function setup(thread)
  thread:set("no", next_no)
  next_no = next_no + 1
end
function init(args)
  for j, body in ipairs(bodies) do
    local headers = {@HEADERS@}
    headers["User-Agent"] = agents[(j % #agents) + 1]
    reqs[j] = wrk.format("POST", path, headers, body)
  end
  n = #reqs
  i = ((no or 0) * 7) % n  -- threads start at different bodies
end
function request()
  i = (i % n) + 1
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,"max_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
'''.replace("@HEADERS@", lua_headers))
    return "\n".join(lines)


class Load:
    """What every run shares: the bodies, the wrk scripts, the flags."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.bodies = make_bodies(args.bodies, args.seed)
        self.segment_bodies = [segment_body(b) for b in self.bodies]
        self.escaped = {b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') for b in self.bodies}  # nginx escape=json
        self.mean_body = statistics.mean(map(len, self.bodies))
        self.mean_line = statistics.mean(len(e) + 1 for e in self.escaped)
        self._scripts: dict[str, Path] = {}

    def script(self, path: str) -> Path:
        if path not in self._scripts:
            self._scripts[path] = self.tmp / f"wrk-{len(self._scripts)}.lua"
            self._scripts[path].write_text(lua_script(self.bodies, path))
        return self._scripts[path]

    def segment_script(self, write_key: str) -> Path:
        """The same events as Segment ``/v1/batch`` requests, authenticated as Segment's libraries do."""
        key = f"segment:{write_key}"
        if key not in self._scripts:
            auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
            self._scripts[key] = self.tmp / f"wrk-{len(self._scripts)}.lua"
            self._scripts[key].write_text(lua_script(self.segment_bodies, "/v1/batch",
                                                     {"Content-Type": "application/json", "Authorization": auth}))
        return self._scripts[key]


@dataclass
class Run:
    server: str  # "nginx", "beaconlake", "segment" (beaconlake, Segment's /v1/batch) or "baseline"
    workers: int
    durability: str
    connections: int
    run: int  # 0 is the warm-up, not counted in the medians
    requests: int = 0
    seconds: float = 0.0
    non2xx: int = 0
    socket_errors: int = 0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # cores used, by role, during the run
    # (CPU seconds, events) of lake delivery from the run's start until it caught up with the run
    delivery: tuple[float, float] | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        return self.requests - self.non2xx


@dataclass
class Block:
    """One collector configuration, measured against nginx in alternation."""

    workers: int
    durability: str
    runs: list[Run] = field(default_factory=list)
    accounting: dict = field(default_factory=dict)
    baseline_accounting: dict = field(default_factory=dict)  # with --baseline
    nginx_log: dict = field(default_factory=dict)


def run_wrk(url: str, script: Path, args: argparse.Namespace, seconds: float, run: Run, roles: dict[int, str]) -> Run:
    """One wrk run; also the CPU each server process and wrk used meanwhile, in cores."""
    cmd = ["wrk", "-t", str(min(args.threads, run.connections)), "-c", str(run.connections), "-d", f"{seconds:g}s",
           "--timeout", f"{args.timeout:g}s", "-s", str(script), url]
    before = {pid: cpu_seconds(pid) for pid in roles}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, irq = machine_cpu_seconds()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=seconds + args.timeout + 30)
    finally:
        if proc.poll() is None:
            stop_group(proc, signal.SIGKILL, 5)
    wall = time.monotonic() - t0
    busy_after, irq_after = machine_cpu_seconds()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for pid, role in roles.items():
        run.cpu[role] = run.cpu.get(role, 0.0) + (cpu_seconds(pid) - before[pid]) / wall
    run.cpu["wrk"] = (after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime) / wall
    # Other processes that ran meanwhile (other users of a shared machine): figures under load are suspect.
    run.cpu["else"] = max(0.0, (busy_after - busy) / wall - sum(run.cpu.values()))
    run.cpu["irq"] = (irq_after - irq) / wall  # mostly the loopback traffic of this very run
    m = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
    if proc.returncode or not m:
        raise SystemExit(f"wrk failed ({proc.returncode}): {' '.join(cmd)}\n{out}")
    s = json.loads(m.group(1))
    run.requests, run.seconds = s["requests"], s["duration_us"] / 1e6
    run.non2xx = s["status_errors"]  # wrk counts status > 399; neither server answers 1xx or 3xx
    run.socket_errors = s["connect_errors"] + s["read_errors"] + s["write_errors"] + s["timeouts"]
    run.p50_ms, run.p90_ms, run.p99_ms = s["p50_us"] / 1e3, s["p90_us"] / 1e3, s["p99_us"] / 1e3
    run.p999_ms, run.max_ms = s["p999_us"] / 1e3, s["max_us"] / 1e3
    return run
