"""The high-level event index: per tenant, person, definition and time, for search.

Both the browser's reports and the server's matches are indexed, keyed on
``(tenant, event_id)`` so indexing a replayed segment again changes nothing. A person is
found by anonymous id or by user id; the index also learns which anonymous ids a user id
has used (from ``identify`` and every event that carries both), so a person's high-level
events before they logged in are found by their user id too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec


@dataclass(frozen=True)
class Capabilities:
    """How a high-level index is reached, asked by callers instead of its class."""

    # The index is a file on this machine (SQLite): every process that writes or reads it (the
    # deliverer, the collector's workers) must run here. False: a server processes on any machine reach.
    local_file: bool


class HighLevelEvent(msgspec.Struct, kw_only=True):
    tenant: str
    event_id: str
    name: str  # the definition's name
    anonymous_id: str
    user_id: str | None = None
    session_id: str | None = None
    event_ts: int
    source: str  # "browser", "server", or what another client said
    matched_event_ids: list[str] = []
    props: str = "{}"  # the event's props, JSON text


def to_json(ev: HighLevelEvent) -> dict:
    out = msgspec.to_builtins(ev)
    out["props"] = msgspec.json.decode(ev.props)
    del out["tenant"]
    return out


class HighLevelIndex(ABC):
    capabilities: ClassVar[Capabilities]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Any) -> HighLevelIndex:
        """The index its ``[highlevel]`` section (of this backend's type, paths resolved) describes."""

    @abstractmethod
    def add(self, events: list[HighLevelEvent], identities: list[tuple[str, str, str]] = ()) -> None:
        """Index events (idempotent) and (tenant, anonymous_id, user_id) links."""

    @abstractmethod
    def search(self, tenant: str, name: str | None, start_ms: int | None, end_ms: int | None,
               limit: int) -> list[HighLevelEvent]:
        """Newest first, ``start_ms <= event_ts < end_ms``."""

    @abstractmethod
    def counts(self, tenant: str, name: str | None, start_ms: int | None, end_ms: int | None) -> dict[str, int]:
        """How many events of each definition in the range."""

    @abstractmethod
    def person(self, tenant: str, person_id: str, limit: int) -> list[HighLevelEvent]:
        """Newest first: the events of this anonymous id, or of this user id and its anonymous ids."""

    @abstractmethod
    def linked_ids(self, tenant: str, ids: set[str]) -> set[str]:
        """The ids the identity links tie to ``ids`` (anonymous ids of these user ids, user ids
        of these anonymous ids), ``ids`` included."""

    @abstractmethod
    def forget(self, tenant: str, ids: set[str]) -> int:
        """Remove the events whose anonymous id or user id is one of ``ids``, and their identity
        links; return how many events went. Then ``purge``."""

    @abstractmethod
    def purge(self) -> None:
        """Make removed rows unrecoverable from the store's own files (free pages, journals)."""

    @abstractmethod
    def close(self) -> None: ...
