"""The raw lake as the convert stage reads it: which Parquet files exist, for which tenant and day.

Listing goes through pyarrow's filesystems (local folder or S3) because the convert stage needs
file sizes (a file delivered again with other content is new) and engines read the same paths.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from beaconlake.config import LocalStorageSettings, S3StorageSettings, StorageSettings
from beaconlake.errors import StorageError

RAW_KEY = re.compile(
    r"^raw/tenant=(?P<tenant>[^/]+)/level=(?P<level>[^/]+)/"
    r"year=(?P<y>\d{4})/month=(?P<m>\d{2})/day=(?P<d>\d{2})/(?P<name>[^/.][^/]*)\.parquet$"
)
DAY_MS = 86_400_000
EPOCH = date(1970, 1, 1)


def day_ms(day: date) -> int:
    """Epoch milliseconds of the day's UTC midnight."""
    return (day - EPOCH).days * DAY_MS


def ms_day(ms: int) -> date:
    return EPOCH + timedelta(days=ms // DAY_MS)


@dataclass(frozen=True)
class RawFile:
    key: str  # relative to the lake root, e.g. raw/tenant=demo/level=mid/year=.../<segment>.parquet
    uri: str  # an absolute local path, or s3://bucket/key
    size: int
    tenant: str
    level: str
    day: date


class RawLake:
    def __init__(self, storage: StorageSettings) -> None:
        if isinstance(storage, LocalStorageSettings):
            self.fs: pafs.FileSystem = pafs.LocalFileSystem()
            self.base = storage.root.rstrip("/")
            self.scheme = ""
        elif isinstance(storage, S3StorageSettings):
            self.fs = pafs.S3FileSystem(
                access_key=storage.access_key_id,
                secret_key=storage.secret_access_key,
                region=storage.region,
                endpoint_override=storage.endpoint_url,
                scheme="http" if (storage.endpoint_url or "").startswith("http://") else "https",
            )
            self.base = f"{storage.bucket}/{storage.prefix.strip('/')}".rstrip("/")
            self.scheme = "s3://"
        else:  # pragma: no cover - config only allows the two
            raise TypeError(f"unknown storage settings {type(storage).__name__}")

    @property
    def is_local(self) -> bool:
        return not self.scheme

    def list(self, tenants: set[str] | None = None) -> list[RawFile]:
        """Every raw Parquet file (of these tenants), sorted by key."""
        selector = pafs.FileSelector(f"{self.base}/raw", allow_not_found=True, recursive=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise StorageError(f"cannot list the raw lake at {self.scheme}{self.base}/raw: {exc}") from exc
        files = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            key = info.path[len(self.base) + 1 :]
            m = RAW_KEY.match(key)
            if m is None or (tenants is not None and m["tenant"] not in tenants):
                continue
            try:
                day = date(int(m["y"]), int(m["m"]), int(m["d"]))
            except ValueError:
                continue  # not a lake partition (day=31 in a 30-day month)
            files.append(RawFile(key, f"{self.scheme}{info.path}", info.size, m["tenant"], m["level"], day))
        return sorted(files, key=lambda f: f.key)

    def open(self, f: RawFile) -> pa.NativeFile:
        """``f`` for random access (a Parquet footer is read from its end)."""
        return self.fs.open_input_file(f.uri.removeprefix(self.scheme))

    def local_paths(self, files: list[RawFile], cache: Path) -> list[str]:
        """Paths an engine can read: the files themselves when local, else copies under ``cache``
        (engines then need no S3 support of their own; the caller removes ``cache``)."""
        if self.is_local:
            return [f.uri for f in files]
        paths = []
        for f in files:
            dest = cache / f.key
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.tmp")
                try:
                    with self.fs.open_input_stream(f.uri.removeprefix(self.scheme)) as src, open(tmp, "wb") as out:
                        while chunk := src.read(8 * 1024 * 1024):
                            out.write(chunk)
                except OSError as exc:
                    raise StorageError(f"cannot read {f.uri}: {exc}") from exc
                os.replace(tmp, dest)
            paths.append(str(dest))
        return paths


def iso_day(text: str) -> date:
    return datetime.strptime(text, "%Y-%m-%d").date()
