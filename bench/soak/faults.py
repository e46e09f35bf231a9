"""The faults the soak injects, each with the time the service took to recover by itself.

Recovered means, after the fault is healed: the replaced process is there, ``/readyz`` answers
200 on every worker, a new event is acknowledged, and the delivery lag is back under the
spool's flush interval plus 5 s (or, for Redis, a new event is counted in ``/v1/stats``).
The tools are the fault suite's (``tests/faults/``): process names, the damage helper, the
storage proxy and the restartable Redis.
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fault_checks import Metrics, assert_recovered, post_probe, wait_until
from fault_damage import damage
from fault_procs import kill9, wait_role


@dataclass
class Injected:
    kind: str
    at_secs: float  # since the soak started
    detail: str = ""
    recovery_secs: float | None = None  # from the fault's end to recovered; None: did not recover
    destroyed: set[str] = field(default_factory=set)


@dataclass
class Target:
    url: str
    write_key: str
    read_key: str
    root_pid: int
    data_dir: Path
    flush_secs: float
    workers: int
    proxy: object | None = None  # a FaultProxy in front of S3
    redis: object | None = None  # a RedisServer


class Faults:
    def __init__(self, target: Target, rng: random.Random, started: float) -> None:
        self.t, self.rng, self.started = target, rng, started

    def kinds(self) -> list[str]:
        kinds = ["worker kill", "deliverer kill", "spool corruption"]
        if self.t.proxy is not None:
            kinds.append("storage outage")
        if self.t.redis is not None:
            kinds.append("redis restart")
        return kinds

    def inject(self, kind: str) -> Injected:
        out = Injected(kind, time.monotonic() - self.started)
        run = {"worker kill": self._worker, "deliverer kill": self._deliverer, "spool corruption": self._corrupt,
               "storage outage": self._storage, "redis restart": self._redis}[kind]
        try:
            healed = run(out)
            self._recovered(out, healed)
        except AssertionError as exc:
            out.detail += f" NOT RECOVERED: {str(exc)[:200]}"
        return out

    def _recovered(self, out: Injected, healed: float) -> None:
        if out.kind == "redis restart":
            name = f"soak_{uuid.uuid4().hex[:8]}"
            post_probe(self.t.url, self.t.write_key, name=name)
            wait_until(lambda: self._counted(name), 60, "the statistics counting again")
        else:
            assert_recovered(self.t.url, self.t.write_key, max_lag_secs=self.t.flush_secs + 5, timeout=120)
        out.recovery_secs = time.monotonic() - healed

    def _counted(self, name: str) -> bool:
        r = httpx.get(f"{self.t.url}/v1/stats?name={name}&by=hour", timeout=10,
                      headers={"authorization": f"Bearer {self.t.read_key}"})
        return r.status_code == 200 and sum(row["count"] for row in r.json()["rows"]) == 1

    # -- the faults ---------------------------------------------------------------------------

    def _worker(self, out: Injected) -> float:
        victim = self.rng.choice(wait_role(self.t.root_pid, "bl-worker"))
        kill9(victim)
        wait_role(self.t.root_pid, "bl-worker", self.t.workers, exclude={victim})
        out.detail = f"pid {victim}"
        return time.monotonic()

    def _deliverer(self, out: Injected) -> float:
        [victim] = wait_role(self.t.root_pid, "bl-deliver")
        kill9(victim)
        wait_role(self.t.root_pid, "bl-deliver", exclude={victim}, timeout=30)
        out.detail = f"pid {victim}"
        return time.monotonic()

    def _corrupt(self, out: Injected) -> float:
        """Pause delivery, flip a byte in a frame of a sealed segment, resume: the segment is
        parked, the frame's events are the only ones lost."""
        [deliverer] = wait_role(self.t.root_pid, "bl-deliver")
        sealed = self.t.data_dir / "spool" / "sealed"
        os.kill(deliverer, signal.SIGSTOP)
        try:
            # a segment sealed after the pause: one sealed before may be in the stopped deliverer's
            # hands already (read, not yet deleted), and damaging it on disk would prove nothing
            before = set(sealed.glob("*.seg"))
            [victim] = wait_until(lambda: sorted(set(sealed.glob("*.seg")) - before)[:1], self.t.flush_secs * 3 + 10,
                                  "a segment sealed after delivery was paused, to damage")
            out.destroyed = damage(victim, self.rng, "flip")
            out.detail = f"{victim.name}: {len(out.destroyed)} events in the damaged frame"
        finally:
            os.kill(deliverer, signal.SIGCONT)
        report = self.t.data_dir / "spool" / "corrupt" / f"{victim.stem}.json"
        wait_until(report.exists, 60, "the damaged segment parked with its report")
        return time.monotonic()

    def _storage(self, out: Injected, secs: float = 20.0) -> float:
        """S3 refuses, answers 500, then hangs, for ``secs`` in all."""
        failures = Metrics(self.t.url)("beaconlake_delivery_failures_total")
        for mode in ("refuse", "error500", "stall"):
            self.t.proxy.mode = mode
            time.sleep(secs / 3)
        self.t.proxy.mode = "pass"
        moved = Metrics(self.t.url)("beaconlake_delivery_failures_total") - failures
        out.detail = f"{secs:.0f} s (refuse, 500, hang); {moved:.0f} failed delivery attempts counted"
        return time.monotonic()

    def _redis(self, out: Injected) -> float:
        self.t.redis.kill()
        time.sleep(2.0)
        self.t.redis.start()
        out.detail = "kill -9, started again 2 s later (its data gone)"
        return time.monotonic()
