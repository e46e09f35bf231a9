"""The profile store: one document per person and tenant, searchable (the talk's Elasticsearch).

A profile is found by its person id, its user id or any of its anonymous ids. The document is
stored as the API serves it (JSON), next to the few columns that lists filter and sort on:
segment, trait scores, propensity, first and last seen. Segment descriptions and the analyze
stage's per-tenant state (model parameters, the last run's watermark) are kept here too, so an
incremental run needs nothing but the store and the tables.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec

TRAITS = ("engagement", "decisiveness", "exploration", "price_sensitivity", "loyalty", "impulsiveness")
SORT_KEYS = ("last_seen", "first_seen", "propensity", "updated_at", *TRAITS)
OPS = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "=": "="}


def column(key: str) -> str:
    """The column behind a sort key or trait name (only names from SORT_KEYS get here)."""
    if key not in SORT_KEYS:
        raise ValueError(f"unknown sort key {key!r}; use one of {', '.join(SORT_KEYS)}")
    return f"t_{key}" if key in TRAITS else key


@dataclass
class Search:
    """What ``GET /v1/profiles`` asks for; every name in it has been checked against TRAITS / SORT_KEYS."""

    segment: str | None = None
    traits: list[tuple[str, str, float]] = field(default_factory=list)  # (trait, op, value)
    q: str | None = None  # full text over interests and the segment label
    sort: str = "last_seen"
    descending: bool = True
    limit: int = 50
    offset: int = 0


class Row(msgspec.Struct):
    """One profile as the store keeps it: the document and the columns lists filter on."""

    tenant: str
    person_id: str
    doc: dict[str, Any]

    def ids(self) -> set[str]:
        out = {self.person_id, *self.doc.get("anonymous_ids", [])}
        if self.doc.get("user_id"):
            out.add(self.doc["user_id"])
        return out

    def text(self) -> str:
        """What full-text search sees: interest categories and the segment label."""
        parts = [i["category"] for i in self.doc.get("interests", [])]
        seg = self.doc.get("segment") or {}
        if seg.get("label"):
            parts.append(seg["label"])
        return " ".join(parts)

    def columns(self) -> tuple:
        d = self.doc
        seg = d.get("segment") or {}
        prop = d.get("propensity") or {}
        traits = d.get("traits") or {}
        return (d.get("user_id"), seg.get("id"), d.get("first_seen_ms"), d.get("last_seen_ms"),
                prop.get("probability"), *((traits.get(t) or {}).get("score") for t in TRAITS), d["updated_at_ms"])


@dataclass(frozen=True)
class Capabilities:
    """How a profile store behaves, asked by callers instead of its class."""

    # A lookup is fast and local enough to run on the event loop (SQLite): no hop to a thread.
    inline_reads: bool
    # The store is a file on this machine: every process that reads or writes it must run here.
    # False: a server processes on any machine reach.
    local_file: bool


_enc = msgspec.json.Encoder()


def encode(doc: dict[str, Any]) -> str:
    """The served document: the store's own helper fields (``*_ms``) are left out."""
    return _enc.encode({k: v for k, v in doc.items() if not k.endswith("_ms")}).decode()


class ProfileStore(ABC):
    capabilities: ClassVar[Capabilities]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Any) -> ProfileStore:
        """The store its ``[profiles]`` section (of this backend's type, paths resolved) describes."""

    @abstractmethod
    def upsert(self, rows: list[Row]) -> None:
        """Insert or replace these profiles (and the ids they are found by)."""

    @abstractmethod
    def delete(self, tenant: str, person_ids: list[str]) -> int:
        """Remove profiles, e.g. an anonymous person's once the browser is stitched to a user;
        returns how many there were."""

    @abstractmethod
    def get_json(self, tenant: str, any_id: str) -> str | None:
        """The profile found by person id, user id or anonymous id, as JSON text; None when none."""

    def get(self, tenant: str, any_id: str) -> dict[str, Any] | None:
        text = self.get_json(tenant, any_id)
        return None if text is None else msgspec.json.decode(text)

    @abstractmethod
    def search(self, tenant: str, search: Search) -> tuple[list[dict[str, Any]], int]:
        """The page of profiles matching ``search`` and how many match in all."""

    @abstractmethod
    def person_ids(self, tenant: str) -> list[str]: ...

    @abstractmethod
    def count(self, tenant: str) -> int: ...

    @abstractmethod
    def set_segments(self, tenant: str, segments: list[dict[str, Any]]) -> None:
        """Replace the tenant's segment descriptions (id, label, centroid, distinguishing)."""

    @abstractmethod
    def segments(self, tenant: str) -> list[dict[str, Any]]:
        """The segment descriptions, each with ``size``: its profiles now."""

    @abstractmethod
    def get_meta(self, tenant: str, key: str) -> Any: ...

    @abstractmethod
    def set_meta(self, tenant: str, key: str, value: Any) -> None: ...

    def linked_ids(self, tenant: str, ids: set[str]) -> tuple[set[str], list[str]]:
        """(``ids`` with every id of the profiles they find, those profiles' person ids)."""
        found, persons = set(ids), []
        for i in sorted(ids):
            text = self.get_json(tenant, i)
            if text is None:
                continue
            row = Row(tenant=tenant, person_id="", doc=msgspec.json.decode(text))
            person = row.doc.get("person_id")
            if person:
                persons.append(person)
                row.person_id = person
            found |= row.ids() - {""}
        return found, sorted(set(persons))

    @abstractmethod
    def delete_inactive(self, tenant: str, last_seen_before_ms: int) -> int:
        """Remove the profiles of people last seen before ``last_seen_before_ms`` (retention);
        returns how many there were."""

    @abstractmethod
    def purge(self) -> None:
        """Make deleted profiles unrecoverable from the store's own files (free pages, journals)."""

    @abstractmethod
    def close(self) -> None: ...
