"""The spool's folders: a segment's state is the folder it sits in.

::

    spool/new/<segment>.open      being created by its writer (header only, never acknowledged)
    spool/new/<segment>.seg       a writer's open segment, flock'ed by that writer while it lives
    spool/sealed/<segment>.seg    complete, waiting for lake delivery
    spool/corrupt/<segment>.seg   parked for a human (damaged, or failing delivery), with
    spool/corrupt/<segment>.json  the report of why, and of what was delivered from it

A segment's name starts with its creation time in ms (13 digits), so the age of the oldest
undelivered segment (the delivery lag) needs no file read.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

from beaconlake.errors import BeaconlakeError

SUFFIX = ".seg"
OPENING = ".open"
NEW = "new"
SEALED = "sealed"
CORRUPT = "corrupt"


def spool_dirs(root: Path) -> tuple[Path, Path]:
    new, sealed = root / NEW, root / SEALED
    new.mkdir(parents=True, exist_ok=True)
    sealed.mkdir(parents=True, exist_ok=True)
    return new, sealed


def sealed_segments(root: Path) -> list[Path]:
    return sorted((root / SEALED).glob(f"*{SUFFIX}"))


def open_segments(root: Path) -> list[Path]:
    return sorted((root / NEW).glob(f"*{SUFFIX}"))


def parked_segments(root: Path) -> list[Path]:
    return sorted((root / CORRUPT).glob(f"*{SUFFIX}"))


def parked_reports(root: Path, limit: int = 50) -> list[dict]:
    """The reports of the parked segments (why, what was delivered, what could not be read),
    newest first, at most ``limit``; a report that does not read says so in its place."""
    reports = []
    for path in sorted((root / CORRUPT).glob("*.json")):
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            reports.append({"segment": path.with_suffix(SUFFIX).name, "error": f"report unreadable: {exc}"})
    reports.sort(key=lambda r: str(r.get("parked_at") or ""), reverse=True)
    return reports[:limit]


def created_ms(path: Path) -> int | None:
    """The creation time a segment's name starts with, or None for a name without one."""
    head = path.name[:13]
    return int(head) if len(head) == 13 and head.isdigit() else None


def oldest_undelivered_ms(root: Path) -> int | None:
    """Creation time of the oldest segment not yet delivered (open or sealed; parked ones are
    counted apart), so a stuck deliverer shows as a growing lag, not as zero."""
    oldest = None
    for path in (*open_segments(root), *sealed_segments(root)):
        ms = created_ms(path)
        if ms is None:
            try:
                ms = int(path.stat().st_mtime * 1000)
            except FileNotFoundError:  # delivered meanwhile
                continue
        oldest = ms if oldest is None else min(oldest, ms)
    return oldest


def undelivered_bytes(root: Path) -> int:
    total = 0
    for folder in (root / NEW, root / SEALED):
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    try:
                        total += entry.stat().st_size
                    except FileNotFoundError:  # delivered meanwhile
                        pass
        except FileNotFoundError:
            pass
    return total


def spool_gauges(root: Path, now_secs: float) -> dict[str, float]:
    """The spool's gauges for ``/metrics``, read from its folders: the delivery lag (the age of
    the oldest undelivered segment), the undelivered bytes and the parked segments. The
    processes that serve ``/metrics`` read them themselves rather than taking the deliverer's
    word: a deliverer hung inside a storage call, dead or restarting cannot say that it is
    stuck, and its last snapshot would say it is not."""
    oldest = oldest_undelivered_ms(root)
    return {
        "beaconlake_delivery_lag_seconds": 0.0 if oldest is None else max(0.0, now_secs - oldest / 1000),
        "beaconlake_spool_undelivered_bytes": float(undelivered_bytes(root)),
        "beaconlake_spool_parked_segments": float(len(parked_segments(root))),
    }


def free_disk_bytes(root: Path) -> int:
    return shutil.disk_usage(root).free


def lock_spool(root: Path) -> int:
    """Take the spool for this process (``up`` or ``deliver``) and return the lock's fd.

    One deliverer at a time: two would deliver and park the same segments. (Sealing the
    segments of dead writers is safe beside live ones: each writer flocks its own segment.)
    The lock dies with its process, even on SIGKILL."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / "owner.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise BeaconlakeError(
            f"the spool {root} is in use by another beaconlake process (pid {owner}); stop it first"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd
