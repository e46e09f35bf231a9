"""How the workers of one socket share its connections.

Every worker would take whatever connections are pending when its turn comes: on a busy
machine the first one awake took all of wrk's 64 connections while the other sat idle, so
two workers served like one. Each worker publishes how many connections it holds in a small
shared table (one 8-byte slot per worker, in a memfd the supervisor creates); a worker that
holds more than ``SLACK`` connections over the least loaded worker leaves a pending
connection to the others for ``DEFER_SECS``. Invariants:

- a connection is never refused or left waiting long for balance's sake: after deferring for
  ``MAX_DEFER_SECS`` in a row a worker accepts anyway (the others may be stuck or gone);
- a dead worker's slot reads as full (the supervisor marks it), so nobody waits for it.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

SLACK = 2
DEFER_SECS = 0.002
MAX_DEFER_SECS = 0.05
SLOT = struct.Struct("q")
FULL = 1 << 62


class Shares:
    def __init__(self, fd: int, slot: int, workers: int) -> None:
        self.map = mmap.mmap(fd, SLOT.size * workers)
        self.slot, self.workers = slot, workers
        self._since = self._last = 0.0

    @staticmethod
    def create(workers: int) -> int:
        """The supervisor's table, every slot full until its worker starts; returns its fd."""
        fd = os.memfd_create("beaconlake-connections", 0)
        os.ftruncate(fd, SLOT.size * workers)
        for slot in range(workers):
            mark_dead(fd, slot)
        return fd

    def publish(self, connections: int) -> None:
        SLOT.pack_into(self.map, self.slot * SLOT.size, connections)

    def defer(self, connections: int) -> bool:
        """Whether to leave a pending connection to a less loaded worker this time."""
        fewest = min((SLOT.unpack_from(self.map, i * SLOT.size)[0] for i in range(self.workers) if i != self.slot),
                     default=FULL)
        if connections <= fewest + SLACK:
            return False
        now = time.monotonic()
        if now - self._last > 2 * DEFER_SECS:  # a new streak of deferring
            self._since = now
        self._last = now
        return now - self._since < MAX_DEFER_SECS


def mark_dead(fd: int, slot: int) -> None:
    os.pwrite(fd, SLOT.pack(FULL), slot * SLOT.size)
