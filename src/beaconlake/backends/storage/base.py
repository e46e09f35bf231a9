"""The storage seam: where the lake's objects live (a local folder, or an S3 bucket).

Keys are ``/``-separated paths relative to the lake root, e.g.
``raw/tenant=demo/level=mid/year=2026/month=11/day=27/<segment>.parquet``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Capabilities:
    """What a storage backend can do, asked by callers instead of its class."""

    # Every key's ``uri`` is a path on this machine's filesystem: readers may open it directly.
    local_paths: bool


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
    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing a missing key is not an error."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """Where a reader outside beaconlake (DuckDB, Spark) finds the object."""
