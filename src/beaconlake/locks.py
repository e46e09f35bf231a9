"""Run locks: one holder of a file at a time, across processes (``flock``, non-blocking).

The lock dies with its process, even on SIGKILL, so a crashed run never leaves a stale lock."""

from __future__ import annotations

import fcntl
from collections.abc import Callable
from pathlib import Path


class RunLock:
    """Take ``path`` now or raise ``busy(path)``; held until ``release()``."""

    def __init__(self, path: Path, busy: Callable[[Path], Exception]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "w")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise busy(path) from None

    def release(self) -> None:
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
