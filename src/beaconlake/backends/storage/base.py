"""The storage seam: where the lake's objects live (a local folder, or an S3 bucket).

Keys are ``/``-separated paths relative to the lake root, e.g.
``raw/tenant=demo/level=mid/year=2026/month=11/day=27/<segment>.parquet``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class Storage(ABC):
    """Object storage as the lake sees it. ``put`` is atomic and durable when it returns:
    a reader sees either the whole new object or none of it, and a crash after ``put``
    returns cannot lose it. Writing an existing key replaces it, which is what makes
    redelivery of a spool segment idempotent."""

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
