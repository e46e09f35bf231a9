"""The counters seam: where mid-level window aggregates live (memory partials, or Redis).

Writers hand ``add`` a batch already folded into minute windows, whose sketches are the
exact sets of anonymous ids seen (``IdSet``); each backend turns those into its own
mergeable distinct-count sketch. Readers ask ``query`` for one tenant and event name and get
buckets of a grain (minute, hour, day) merged across every process that wrote.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from beaconlake.realtime.aggregate import Agg, WindowKey, describe


class IdSet(set):
    """The anonymous ids of a batch's window: a sketch that is exact and merges by union."""

    def merge(self, other: IdSet) -> IdSet:
        self.update(other)
        return self


def row(start: int, group: str, agg: Agg, distinct: int) -> dict[str, Any]:
    return {
        "start": start,
        "path": group or None,
        "count": agg.count,
        "distinct_anonymous_ids": distinct,
        "props": describe(agg.nums),
    }


class Counters(ABC):
    """One process's handle on the counters. ``add`` may keep partials in the process; ``flush``
    makes them visible to readers in other processes (and durable); ``query`` sees them all."""

    #: The relative standard error of ``distinct_anonymous_ids``.
    standard_error: float

    @abstractmethod
    def add(self, batch: dict[WindowKey, Agg]) -> None: ...

    def fold(self, folder: Any, tenant: str, events: Any, now_ms: int) -> int:
        """Fold events (see ``realtime.stats.Folder.fold``) and add them; return how many were late."""
        batch: dict = {}
        late = folder.fold(tenant, events, now_ms, batch, IdSet)
        self.add(batch)
        return late

    @abstractmethod
    def query(self, tenant: str, name: str, start_ms: int, end_ms: int, by: str, grouped: bool) -> list[dict[str, Any]]:
        """Buckets of grain ``by`` made of the minutes in [start_ms floored to the grain, end_ms),
        sorted by start then path. ``grouped``: one row per page path, else the name's totals."""

    @abstractmethod
    def series(self, start_ms: int, end_ms: int) -> set[tuple[str, str]]:
        """The (tenant, event name) pairs with a window in [start_ms, end_ms)."""

    @abstractmethod
    def prune(self, before_ms: int) -> None:
        """Forget windows that start before ``before_ms`` (past retention)."""

    def flush(self) -> None:
        """Publish this process's partials; a no-op where writes are shared at once."""

    def close(self) -> None:
        self.flush()
