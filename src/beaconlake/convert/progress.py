"""Progress of a convert run: a bar on a terminal, one log line per batch otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger("beaconlake.convert")


class Progress:
    def __init__(self, total_files: int, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total_files = total_files
        self.files = 0
        self.events = 0
        self.started = time.monotonic()
        self.stream = stream or sys.stderr
        self.bar = None
        if enabled and total_files and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_files, unit="file", desc="convert", file=self.stream, dynamic_ncols=True)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.events / elapsed if elapsed > 0 else 0.0

    def batch_done(self, tenant: str, first_day: str, last_day: str, files: int, events: int) -> None:
        self.files += files
        self.events += events
        if self.bar is not None:
            self.bar.update(files)
            self.bar.set_postfix_str(f"{self.events:,} events, {self.rate:,.0f} events/s")
        else:
            log.info(
                "converted %s %s..%s: files %d/%d, events %s, %s events/s",
                tenant, first_day, last_day, self.files, self.total_files, f"{self.events:,}", f"{self.rate:,.0f}",
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
