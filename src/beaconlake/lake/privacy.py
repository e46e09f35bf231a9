"""The privacy records the lake keeps: erasure requests, the suppression list, the audit log, and
the salted hash every one of them uses instead of a person's ids.

Keys are built by ``lake/layout.py``. What each record holds, and why:

* ``ErasureRequest`` (``erasures/pending/``): the ids to forget, in clear, because they must be
  found; it exists only until the request is carried out, then it is deleted.
* ``ErasureDone`` (``erasures/done/``): what ``GET /v1/erasures/{id}`` shows afterwards; hashes
  and counts only.
* ``Suppression`` (``suppress/``): hashes of every id of the forgotten person and the time until
  which delivery drops their events (a late batch, an outbox flushed later). Written when the
  request is made, so delivery drops the person's events from then on.
* ``AuditEntry`` (``audit/``): one object per step (requested, carried out), written once and
  never rewritten: the log is append-only because each entry is a new key.

The hash is keyed BLAKE2b (``IdHasher``): without the salt, a hash cannot be checked against a
list of guessed ids, yet the same id always gives the same hash, so an auditor holding the salt can
confirm that a given id was forgotten, and delivery can match arrivals against the list. The salt
is ``privacy.id_salt`` when configured (set it in a cluster: every node must agree), otherwise a
random one made once and kept at ``privacy/salt`` in the lake.

This module is core: it takes a storage object but imports no backend.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from datetime import date
from typing import TYPE_CHECKING

import msgspec

from beaconlake.errors import StorageError
from beaconlake.lake import layout
from beaconlake.units import day_of, now_ms

if TYPE_CHECKING:
    from beaconlake.backends.storage.base import Storage

log = logging.getLogger(__name__)
SALT_BYTES = 32
HASH_BYTES = 16


class IdHasher:
    def __init__(self, salt: bytes) -> None:
        if len(salt) < 16:
            raise ValueError(f"an id salt must hold at least 16 bytes, got {len(salt)}")
        self.salt = salt[:64]  # BLAKE2b takes a key of at most 64 bytes

    def __call__(self, person_id: str) -> str:
        return hashlib.blake2b(person_id.encode(), key=self.salt, digest_size=HASH_BYTES).hexdigest()


def id_hasher(storage: Storage, configured: str | None) -> IdHasher:
    """The hasher of ``privacy.id_salt``, or of the salt kept in the lake (made on first use)."""
    if configured:
        return IdHasher(configured.encode())
    try:
        return IdHasher(storage.get(layout.SALT_KEY))
    except StorageError:
        if storage.exists(layout.SALT_KEY):
            raise
    storage.put(layout.SALT_KEY, secrets.token_bytes(SALT_BYTES))
    return IdHasher(storage.get(layout.SALT_KEY))  # a concurrent first use: whichever put is there


class ErasureRequest(msgspec.Struct, kw_only=True):
    id: str
    tenant: str
    ids: list[str]  # as asked: any anonymous id, user id or person id of the person
    requested_at_ms: int
    via: str  # "http" or "cli"


class ErasureDone(msgspec.Struct, kw_only=True):
    id: str
    tenant: str
    id_hashes: list[str]  # of the ids asked for
    requested_at_ms: int
    carried_out_at_ms: int
    ids_found: int  # ids of the identity graph that were forgotten (the asked ones and their links)
    removed: dict[str, int]  # rows (or objects) removed, by store


class Suppression(msgspec.Struct, kw_only=True):
    request: str
    id_hashes: list[str]  # of every id of the person known so far
    until_ms: int


class AuditEntry(msgspec.Struct, kw_only=True):
    request: str
    tenant: str
    what: str  # requested, carried_out
    at_ms: int
    id_hashes: list[str]
    removed: dict[str, int] = {}
    seconds: float | None = None
    via: str | None = None


_enc = msgspec.json.Encoder()


def put(storage: Storage, key: str, record: msgspec.Struct) -> None:
    storage.put(key, _enc.encode(record))


def get(storage: Storage, key: str, kind: type[msgspec.Struct]) -> msgspec.Struct | None:
    try:
        return msgspec.json.decode(storage.get(key), type=kind)
    except StorageError:
        if storage.exists(key):
            raise
        return None


def audit(storage: Storage, entry: AuditEntry) -> str:
    """Append ``entry`` to the audit log (a new object; never one that exists)."""
    key = layout.audit_key(entry.tenant, date(*day_of(entry.at_ms)), entry.at_ms, entry.request, entry.what)
    put(storage, key, entry)
    return key


class SuppressionList:
    """The hashed ids whose events delivery drops, per tenant, read from the lake again at most
    every ``refresh_secs`` (a listing of ``suppress/``; entries past their time are skipped)."""

    def __init__(self, storage: Storage, hasher: IdHasher | None, configured_salt: str | None,
                 refresh_secs: float) -> None:
        self.storage = storage
        self._hasher = hasher
        self._salt = configured_salt
        self.refresh_secs = refresh_secs
        self._loaded = -1e18
        self.hashes: dict[str, set[str]] = {}

    @property
    def hasher(self) -> IdHasher:
        if self._hasher is None:
            self._hasher = id_hasher(self.storage, self._salt)
        return self._hasher

    def refresh(self, force: bool = False) -> dict[str, set[str]]:
        if not force and time.monotonic() - self._loaded < self.refresh_secs:
            return self.hashes
        now = now_ms()
        found: dict[str, set[str]] = {}
        for key in self.storage.list(layout.SUPPRESS):
            parsed = layout.parse_suppress(key)
            if parsed is None:
                continue
            entry = get(self.storage, key, Suppression)
            if entry is not None and entry.until_ms > now:
                found.setdefault(parsed[0], set()).update(entry.id_hashes)
        self.hashes = found
        self._loaded = time.monotonic()
        return found
