"""The storage seam: where the lake's objects live (a local folder, an S3 bucket, an Azure
Blob container), and the only door to them.

Keys are ``/``-separated paths relative to the lake root, built and parsed by
``beaconlake.lake.layout`` (e.g. ``raw/tenant=demo/level=mid/year=2026/month=11/day=27/<segment>.parquet``).

Writers use ``put``/``get``/``delete``; readers that scan (convert's listing and engines, the
dashboard's Live view) use ``list_info``, ``arrow_filesystem`` and ``scan_paths``. No other
module builds a filesystem object or opens a lake path of its own, so a new backend is one
module here (plus its settings) and every reader works with it.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from beaconlake.errors import StorageError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

COPY_CHUNK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, for callers that choose a way to read (never ``isinstance``)."""

    # ``scan_paths`` returns the objects' own local paths: an engine reads them in place, no copy.
    local_paths: bool


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the lake root
    size: int  # bytes
    mtime_ms: int  # last modified, ms since the epoch (the backend's clock)


class Storage(ABC):
    """Object storage as the lake sees it. ``put`` is atomic and durable when it returns:
    a reader sees either the whole new object or none of it, and a crash after ``put``
    returns cannot lose it. Writing an existing key replaces it, which is what makes
    redelivery of a spool segment idempotent."""

    capabilities: ClassVar[Capabilities]

    @classmethod
    def from_settings(cls, settings: Any) -> Storage:
        """The storage its ``[storage]`` section (of this backend's type) describes; by default
        the backend's constructor takes the section."""
        return cls(settings)  # type: ignore[call-arg]

    @abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; ``StorageError`` when it does not exist."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list_info(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object under ``prefix`` (a plain string prefix of the key), sorted by key."""

    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, sorted."""
        return [info.key for info in self.list_info(prefix)]

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing a missing key is not an error."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """Where the object is, for people (logs, reports) and engines given ``scan_paths``."""

    @abstractmethod
    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        """A pyarrow filesystem and the lake root inside it (``f"{root}/{key}"`` is a key's
        path), for pyarrow datasets and Parquet readers, and DuckDB through Arrow."""

    def open_input(self, key: str) -> pa.NativeFile:
        """The object for random access (a Parquet footer is read from its end);
        ``StorageError`` when it cannot be opened."""
        fs, root = self.arrow_filesystem()
        try:
            return fs.open_input_file(f"{root}/{key}")
        except OSError as exc:
            raise StorageError(f"cannot open {self.uri(key)}: {exc}") from exc

    def scan_paths(self, keys: list[str], cache_dir: Path) -> list[str]:
        """Paths an engine (DuckDB, Spark) can read, one per key in order: the objects' own
        paths when ``capabilities.local_paths``, else copies under ``cache_dir`` (engines then
        need no support for the remote store; a copy already there is reused, and the caller
        removes ``cache_dir``)."""
        fs, root = self.arrow_filesystem()
        paths = []
        for key in keys:
            dest = cache_dir / key
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.tmp")
                try:
                    with fs.open_input_stream(f"{root}/{key}") as src, open(tmp, "wb") as out:
                        while chunk := src.read(COPY_CHUNK_BYTES):
                            out.write(chunk)
                except OSError as exc:
                    raise StorageError(f"cannot copy {self.uri(key)} to {tmp}: {exc}") from exc
                os.replace(tmp, dest)
            paths.append(str(dest))
        return paths
