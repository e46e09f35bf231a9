"""The dashboard tests' shop: a collector with known funnel input, and helpers to drive it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from support import Collector

from beaconlake import config
from beaconlake.demo import drive

MIN = 60_000
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
# The starter's definition, plus a sign-up funnel on names the simulator never sends, so its step
# counts are the known input's alone, whatever simulated visitors do.
SEQUENCES = [
    {"name": "considered_then_added", "within_secs": 600, "steps": [
        {"name": "product_view", "where": [{"field": "props.category", "op": "exists"}]},
        {"name": "product_view", "same": ["props.category"]},
        {"name": "add_to_cart"},
    ]},
    {"name": "signup_funnel", "within_secs": 3600, "steps": [
        {"name": "view_plan"},
        {"name": "start_signup", "where": [{"field": "props.plan", "op": "exists"}]},
        {"name": "signup_completed", "same": ["props.plan"]},
    ]},
]
# k1 does all three steps; k2 stops after starting; k3 only looks; k4 completes without starting
# (step 1 only); k5 never views a plan (nothing); k6 starts two hours after the view, outside
# within_secs (step 1); k7 completes another plan than the one it started (step 2).
FUNNEL = [6, 3, 1]
# A visitor whose id holds what a URL path cannot carry as it is: the page must encode it.
ODD_ID = "known odd/id?#100% \U0001f600"


def _ev(anon: str, ts: int, name: str, props: dict | None = None, path: str = "/") -> dict[str, Any]:
    return {"level": "mid", "name": name, "anonymous_id": anon, "client_ts": ts, "url": f"https://shop.example{path}",
            "props": props or {}}


def known_events(now: int) -> list[dict[str, Any]]:
    t = now - 3 * 60 * MIN

    def view(a: str, ts: int) -> list[dict]:
        return [_ev(a, ts, "page_view", path="/pricing"), _ev(a, ts + 1000, "view_plan", {"plan": "pro"}, "/pricing")]

    def start(a: str, ts: int, plan: str = "pro") -> list[dict]:
        return [_ev(a, ts, "page_view", path="/signup"), _ev(a, ts + 500, "start_signup", {"plan": plan}, "/signup")]

    def done(a: str, ts: int, plan: str = "pro") -> list[dict]:
        return [_ev(a, ts, "signup_completed", {"plan": plan}, "/signup")]

    return [
        *view("known-k1", t), *start("known-k1", t + MIN), *done("known-k1", t + 2 * MIN),
        *view("known-k2", t), *start("known-k2", t + MIN),
        *view("known-k3", t),
        *view("known-k4", t), *done("known-k4", t + MIN),
        *start("known-k5", t), *done("known-k5", t + MIN),
        *view("known-k6", t), *start("known-k6", t + 120 * MIN),
        *view("known-k7", t), *start("known-k7", t + MIN), *done("known-k7", t + 2 * MIN, plan="free"),
        _ev(ODD_ID, t, "page_view", path="/odd"),
        # someone on the site right now, for the Live view
        _ev("known-live", now - MIN, "page_view", path="/"), _ev("known-live", now - MIN + 500, "search", {"query": "tent"}, "/"),
    ]


@dataclass
class Shop:
    collector: Collector
    settings: config.Settings
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.collector.url

    @property
    def read_key(self) -> str:
        return self.collector.read_key

    @property
    def admin_key(self) -> str:
        """The tenant's admin key: what asks for a run now."""
        return self.settings.tenants[0].admin_key

    def get(self, path: str, key: str | None = None, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, params=params, headers={"authorization": f"Bearer {key or self.read_key}"}, timeout=30)

    def post_simulated(self, people: int, days: int) -> int:
        """Simulated visitors over HTTP, as the demo sends them."""
        poster = drive.Poster(self.url, self.collector.write_key)
        n = drive.post_all(poster, drive.history(people, days, 11, int(time.time() * 1000)))
        assert poster.rejected == 0
        return n

    def run_pipeline(self, timeout: float = 60) -> dict[str, Any]:
        """Ask for a convert + analyze run the way the dashboard's button does; wait for its outcome."""
        before = {r["run_id"] for r in self.get("/v1/dashboard/pipeline").json()["runs"]}
        r = httpx.post(self.url + "/v1/dashboard/pipeline/run", headers={"authorization": f"Bearer {self.admin_key}"})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = [x for x in self.get("/v1/dashboard/pipeline").json()["runs"] if x["run_id"] not in before]
            if runs and runs[0]["status"] != "running":
                assert runs[0]["status"] == "ok", runs[0]
                return runs[0]
            time.sleep(0.2)
        raise TimeoutError(f"no finished run after {timeout} s")
