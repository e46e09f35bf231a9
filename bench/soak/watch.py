"""What the soak watches while it runs: the memory and the open descriptors of every process of
``beaconlake up``, by role, sampled every few seconds (a process that is killed and replaced
counts under its role). Flat descriptors over ten minutes with faults is the point: a leak
shows as a slope."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from fault_procs import descendants, fd_count, rss_bytes


@dataclass
class Sample:
    at_secs: float
    fds: int  # all processes of the group
    rss: dict[str, int]  # role -> bytes, summed over its processes


@dataclass
class Watch:
    root_pid: int
    every_secs: float = 5.0
    samples: list[Sample] = field(default_factory=list)
    peak_rss: dict[str, int] = field(default_factory=dict)  # role -> the largest one process reached

    def start(self, started: float) -> Watch:
        self.started = started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="soak-watch")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.every_secs):
            procs = {self.root_pid: "bl-up", **descendants(self.root_pid)}
            fds, rss = 0, {}
            for pid, role in procs.items():
                role = role if role.startswith("bl-") else "other"
                size = rss_bytes(pid)
                fds += fd_count(pid)
                rss[role] = rss.get(role, 0) + size
                self.peak_rss[role] = max(self.peak_rss.get(role, 0), size)
            self.samples.append(Sample(time.monotonic() - self.started, fds, rss))

    def fds_by_minute(self) -> list[tuple[int, int, int]]:
        """(minute, fewest, most) open descriptors of the whole group in each minute."""
        out: dict[int, list[int]] = {}
        for s in self.samples:
            out.setdefault(int(s.at_secs // 60), []).append(s.fds)
        return [(m, min(v), max(v)) for m, v in sorted(out.items())]
