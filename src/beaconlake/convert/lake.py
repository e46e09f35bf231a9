"""The raw lake as the convert stage reads it: which Parquet files exist, for which tenant and day.

Everything goes through the storage seam: the listing (with sizes: a file delivered again
with other content is new), opening a file for its footer, and the paths engines read.
Keys are read back by ``lake.layout``, the module delivery writes them with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa

from beaconlake.backends.engine.base import Engine
from beaconlake.backends.storage import Storage
from beaconlake.lake import layout
from beaconlake.units import DAY_MS

EPOCH = date(1970, 1, 1)


def day_ms(day: date) -> int:
    """Epoch milliseconds of the day's UTC midnight."""
    return (day - EPOCH).days * DAY_MS


def ms_day(ms: int) -> date:
    return EPOCH + timedelta(days=ms // DAY_MS)


@dataclass(frozen=True)
class RawFile:
    key: str  # relative to the lake root, e.g. raw/tenant=demo/level=mid/year=.../<segment>.parquet
    size: int
    tenant: str
    level: str
    day: date


class RawLake:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def list(self, tenants: set[str] | None = None) -> list[RawFile]:
        """Every raw Parquet file (of these tenants), sorted by key."""
        files = []
        for info in self.storage.list_info(layout.RAW):
            k = layout.parse_raw(info.key)
            if k is None or (tenants is not None and k.tenant not in tenants):
                continue  # not a lake file (a stray object, day=31 in a 30-day month)
            files.append(RawFile(info.key, info.size, k.tenant, k.level, k.day))
        return files

    def open(self, f: RawFile) -> pa.NativeFile:
        """``f`` for random access (a Parquet footer is read from its end)."""
        return self.storage.open_input(f.key)

    def engine_paths(self, files: list[RawFile], cache: Path, engine: Engine) -> list[str]:
        """What ``engine`` is given to read ``files``: the objects' own URIs when it reaches the
        store itself (Spark with S3A: executors read them, not this machine), else ``local_paths``."""
        if files and not self.storage.capabilities.local_paths and engine.reaches(self.storage.uri(files[0].key)):
            return [self.storage.uri(f.key) for f in files]
        return self.local_paths(files, cache)

    def local_paths(self, files: list[RawFile], cache: Path) -> list[str]:
        """Paths an engine can read: the files themselves when the storage has local paths,
        else copies under ``cache`` (the caller removes ``cache``)."""
        return self.storage.scan_paths([f.key for f in files], cache)
