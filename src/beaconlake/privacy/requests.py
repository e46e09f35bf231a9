"""Erasure requests: recorded durably at once, looked up by id, listed when pending.

``request`` checks the ids, then writes, in this order: the suppression entry (so delivery drops
the person's events from the next refresh on), the pending request (the ids in clear, until it is
carried out) and the ``requested`` audit entry. Each is one atomic ``Storage.put``; a crash between
them leaves at worst a suppression entry without a request, which forgets nothing and expires.
The caller answers 202 only after the three are durable.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from beaconlake.backends.storage import Storage
from beaconlake.config import Settings
from beaconlake.errors import BeaconlakeError
from beaconlake.lake import layout
from beaconlake.lake import privacy as records
from beaconlake.lake.privacy import AuditEntry, ErasureDone, ErasureRequest, IdHasher, Suppression
from beaconlake.types import ID_MAX
from beaconlake.units import DAY_MS, now_ms

MAX_IDS_PER_REQUEST = 100


class BadErasure(BeaconlakeError):
    """An erasure request that cannot be accepted, with what was wrong."""


def check_ids(ids: list) -> list[str]:
    if not isinstance(ids, list) or not ids:
        raise BadErasure("name the person: one id, or a list of up to 100 of their ids (anonymous ids, user ids, person id)")
    if len(ids) > MAX_IDS_PER_REQUEST:
        raise BadErasure(f"{len(ids)} ids in one request; at most {MAX_IDS_PER_REQUEST} (send several requests)")
    for i in ids:
        if not isinstance(i, str) or not 0 < len(i) <= ID_MAX or not i.strip():
            raise BadErasure(f"each id is a non-blank string of at most {ID_MAX} characters; got {i!r:.160}")
    return sorted(set(ids))


@dataclass
class Status:
    id: str
    tenant: str
    state: str  # pending or done
    requested_at_ms: int
    carried_out_at_ms: int | None = None
    removed: dict[str, int] | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def request(storage: Storage, hasher: IdHasher, settings: Settings, tenant: str, ids: list, via: str) -> ErasureRequest:
    """Record an erasure of the person ``ids`` name, for ``tenant``; returns the request."""
    if tenant not in {t.id for t in settings.tenants}:
        raise BadErasure(f"no tenant {tenant!r} in the configuration (tenants: {', '.join(t.id for t in settings.tenants)})")
    ids = check_ids(ids)
    at = now_ms()
    req = ErasureRequest(id=uuid.uuid4().hex, tenant=tenant, ids=ids, requested_at_ms=at, via=via)
    hashes = sorted(hasher(i) for i in ids)
    until = at + int(settings.privacy.suppression_days * DAY_MS)
    records.put(storage, layout.suppress_key(tenant, req.id), Suppression(request=req.id, id_hashes=hashes, until_ms=until))
    records.put(storage, layout.erasure_key(layout.PENDING, tenant, req.id), req)
    records.audit(storage, AuditEntry(request=req.id, tenant=tenant, what="requested", at_ms=at, id_hashes=hashes, via=via))
    return req


def status(storage: Storage, tenant: str, request_id: str) -> Status | None:
    """The request's state, or None when ``tenant`` has no request of that id."""
    try:
        pending_key = layout.erasure_key(layout.PENDING, tenant, request_id)
    except ValueError:
        return None
    req = records.get(storage, pending_key, ErasureRequest)
    if req is not None:
        return Status(req.id, tenant, "pending", req.requested_at_ms)
    done = records.get(storage, layout.erasure_key(layout.DONE, tenant, request_id), ErasureDone)
    if done is not None:
        return Status(done.id, tenant, "done", done.requested_at_ms, done.carried_out_at_ms, done.removed)
    return None


def pending(storage: Storage, tenants: set[str] | None = None) -> list[ErasureRequest]:
    """Every pending request (of ``tenants``), oldest first."""
    out = []
    for key in storage.list(layout.erasure_prefix(layout.PENDING)):
        parsed = layout.parse_erasure(key)
        if parsed is None or (tenants is not None and parsed.tenant not in tenants):
            continue
        req = records.get(storage, key, ErasureRequest)
        if req is not None:
            out.append(req)
    return sorted(out, key=lambda r: (r.requested_at_ms, r.id))


def prune_suppressions(storage: Storage, now: int | None = None) -> int:
    """Delete the suppression entries whose time is over (delivery skips them already), so the
    list delivery reads stays as long as the live entries; returns how many went."""
    now = now_ms() if now is None else now
    gone = 0
    for key in storage.list(layout.SUPPRESS):
        if layout.parse_suppress(key) is None:
            continue
        entry = records.get(storage, key, Suppression)
        if entry is not None and entry.until_ms <= now:
            storage.delete(key)
            gone += 1
    return gone
