"""The spool's disk budget: a writer refuses a write before it would take the disk under
``spool.min_free_disk_bytes`` plus the deliverer's reserve.

Why a reserve: the only thing that frees spool space is lake delivery, and delivering a
segment first writes its Parquet files (to the same disk, with local storage) and deletes
the segment after. If writers could fill the disk to the floor, a floor smaller than one
segment's Parquet output would deadlock: nothing could be delivered, so nothing freed.

Why tracked between checks: a free-space check (statvfs) is cheap but not free, and a burst
between two checks must not overshoot. Each write takes its bytes from the budget; the budget
is re-measured at least every ``REFRESH_SECS`` and whenever it looks too small, so what other
processes (other workers, the deliverer) wrote meanwhile is seen within that time. Bytes taken
for frames buffered until the next group-commit write (``spool.py``) are not on disk yet, so a
re-measure subtracts them too (``unwritten``).
"""

from __future__ import annotations

import errno
import shutil
import time
from pathlib import Path

from beaconlake.config import SpoolSettings

REFRESH_SECS = 0.05


class SpoolFull(OSError):
    """A spool write was refused because the disk budget is spent (errno ENOSPC). The collector
    answers 503 with Retry-After, as for any OSError from the spool."""


def delivery_reserve_bytes(settings: SpoolSettings) -> int:
    """Free disk kept for the deliverer: one segment's Parquet files (at most about the
    segment's size, which may exceed ``max_segment_bytes`` by one frame) with room to spare
    for the rejected-area file, parked-segment reports and checkpoints."""
    return 2 * settings.max_segment_bytes


class DiskBudget:
    def __init__(self, path: Path, settings: SpoolSettings) -> None:
        self.path = path
        self.floor = settings.min_free_disk_bytes
        self.reserve = delivery_reserve_bytes(settings)
        self.refresh_secs = REFRESH_SECS
        self.free = 0
        self.available = 0  # bytes writable before the floor plus the reserve
        self.unwritten = 0  # bytes taken for buffered frames: not on disk, so not in a measure
        self._measured_at = float("-inf")

    def refresh(self) -> int:
        self.free = shutil.disk_usage(self.path).free
        self.available = self.free - self.floor - self.reserve - self.unwritten
        self._measured_at = time.monotonic()
        return self.available

    def take(self, nbytes: int, buffered: bool = False) -> None:
        """Count ``nbytes`` as written (``buffered``: to be written, see ``written``); raise
        SpoolFull (nothing taken) when they do not fit."""
        if self.available < nbytes or time.monotonic() - self._measured_at > self.refresh_secs:
            self.refresh()
        if self.available < nbytes:
            raise SpoolFull(errno.ENOSPC, self.shortfall(nbytes))
        self.available -= nbytes
        if buffered:
            self.unwritten += nbytes

    def written(self, nbytes: int) -> None:
        """Buffered bytes taken before are now on disk (a measure sees them)."""
        self.unwritten -= nbytes

    def give_back(self, nbytes: int, buffered: bool = False) -> None:
        """Bytes taken for a write that did not happen (or was truncated away)."""
        self.available += nbytes
        if buffered:
            self.unwritten -= nbytes

    def shortfall(self, nbytes: int) -> str:
        return (f"spool disk budget spent: {self.free} bytes free, and writing {nbytes} more would go under "
                f"spool.min_free_disk_bytes={self.floor} plus the deliverer's reserve of {self.reserve} bytes "
                f"(2 x spool.max_segment_bytes); free disk space, or lower spool.min_free_disk_bytes")
