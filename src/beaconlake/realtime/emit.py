"""Server-detected high-level events enter the pipeline through a spool segment of their own,
so they reach the lake, the index and the statistics exactly as a browser's events do."""

from __future__ import annotations

import os
import secrets
import time
from collections import defaultdict
from pathlib import Path

import msgspec

from beaconlake.backends.highlevel import HighLevelEvent
from beaconlake.ingest import spool
from beaconlake.lake.records import LakeEvent
from beaconlake.realtime.sequences import Match
from beaconlake.types import SpoolRecord, UserAgent

# The marker in the names of the segments this module writes: the consumer counts their
# events itself, since they never passed through a collector worker's router.
OWN_MARK = "-detect-"
_json = msgspec.json.Encoder()
_record = msgspec.msgpack.Encoder()


def is_own(path: Path) -> bool:
    return OWN_MARK in path.name


def match_event(m: Match) -> dict:
    return {
        "event_id": m.event_id,
        "level": "high",
        "name": m.definition,
        "anonymous_id": m.anonymous_id,
        "user_id": m.user_id,
        "session_id": m.session_id,
        "client_ts": m.event_ts,
        "props": {"definition": m.definition, "matched_event_ids": m.event_ids, "source": "server"},
    }


def match_payloads(matches: list[Match], now: int) -> list[bytes]:
    """The spool records (one per tenant) that carry the matches as canonical events."""
    by_tenant: dict[str, list[dict]] = defaultdict(list)
    for m in matches:
        ev = match_event(m)
        by_tenant[m.tenant].append({k: v for k, v in ev.items() if v is not None})
    payloads = []
    for tenant, events in sorted(by_tenant.items()):
        body = _json.encode({"sent_at": now, "events": events})
        # client_ts is the last step's time; sent_at = received_at makes event_ts equal it
        payloads.append(_record.encode(SpoolRecord(tenant, now, now, None, None, UserAgent(), body, None, [], "server")))
    return payloads


def write_segment(root: Path, matches: list[Match]) -> Path | None:
    """One sealed, fsynced segment holding the matches (one record per tenant)."""
    if not matches:
        return None
    now = time.time_ns() // 1_000_000
    payloads = match_payloads(matches, now)
    return spool.write_sealed_segment(root, f"{now:013d}{OWN_MARK}{os.getpid()}-{secrets.token_hex(3)}", payloads)


def indexed(tenant: str, ev: LakeEvent, props: object) -> HighLevelEvent:
    """The high-level index's row for a level-``high`` event (``props``: its decoded props, or
    None when it had none): one spelling for the deliverer's consumer and the lake detector, so
    both index a match identically."""
    source = props.get("source") if isinstance(props, dict) else None
    matched = props.get("matched_event_ids") if isinstance(props, dict) else None
    return HighLevelEvent(
        tenant=tenant, event_id=ev.event_id, name=ev.name, anonymous_id=ev.anonymous_id, user_id=ev.user_id,
        session_id=ev.session_id, event_ts=ev.event_ts, source=str(source or "client"),
        matched_event_ids=[str(i) for i in matched] if isinstance(matched, list) else [],
        props=ev.props if props is not None else "{}",
    )
