"""The processes of a running ``beaconlake up``, found by their names, and what they use.

``up`` names its processes (``/proc/<pid>/comm``, what ``ps`` and ``pgrep -x`` show):
``bl-up`` (the supervisor), ``bl-worker`` (server workers), ``bl-deliver`` (lake delivery),
``bl-schedule`` (the scheduler, which runs convert and analyze in-process).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

ROLES = ("bl-worker", "bl-deliver", "bl-schedule")


def _stat(pid: int) -> tuple[str, int] | None:
    """(name, parent pid) of a live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None  # a zombie: dead, not reaped yet
    return name, int(fields[1])


def alive(pid: int) -> bool:
    """The process runs (a zombie, dead but not reaped, does not)."""
    return _stat(pid) is not None


def descendants(root: int) -> dict[int, str]:
    """pid -> name of every live process below ``root``."""
    parents: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                parents[int(entry.name)] = st
    out: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (name, ppid) in parents.items():
            if ppid == parent and pid not in out:
                out[pid] = name
                frontier.append(pid)
    return out


def role_pids(root: int, role: str) -> list[int]:
    return sorted(pid for pid, name in descendants(root).items() if name == role)


def wait_role(root: int, role: str, count: int = 1, exclude: set[int] = frozenset(), timeout: float = 20.0) -> list[int]:
    """The pids of ``role`` once ``count`` of them (none of ``exclude``) are alive."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in role_pids(root, role) if p not in exclude]
        if len(pids) >= count:
            return pids
        assert time.monotonic() < deadline, f"no {count} live {role} process(es) under {root} after {timeout}s: {pids}"
        time.sleep(0.05)


def kill9(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def rss_bytes(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
