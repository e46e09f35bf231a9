"""The proof of an erasure: after it, no file of the deployment holds a byte of the person.

One person with two browsers and a user id, an erasure that names only one anonymous id, and a
search of every file under the data folder (as stored and as its readers see it, search.py) for
each of the person's ids and the marker they sent: zero hits. The other people's rows are all
there, unchanged; the snapshots from before cannot be read back; a late batch is not resurrected.
"""

from __future__ import annotations

import time

import pytest
from pyiceberg.expressions import EqualTo
from pyiceberg.table import StaticTable
from privacy_search import hits, local_files
from support import read_lake
from privacy_world import make, visit

from beaconlake.backends.profiles import open_profiles
from beaconlake.backends.storage import open_storage
from beaconlake.convert.run import open_store
from beaconlake.lake import layout
from beaconlake.lake import privacy as records
from beaconlake.lake.privacy import AuditEntry, id_hasher
from beaconlake.privacy.forget import carry_out

pytestmark = pytest.mark.slow


def _rows(store, table: str, people: set[str]) -> list[dict]:
    t = store.table(table).scan(row_filter=EqualTo("tenant", "shop")).to_arrow().to_pylist()
    keyed = [r for r in t if r.get("anonymous_id") in people]
    return sorted(keyed, key=lambda r: str(sorted(r.items())))


def test_an_erased_person_is_nowhere_and_everyone_else_is_untouched(tmp_path):
    shop = make(tmp_path)
    data = tmp_path / "data"
    needles = [*shop.p_ids, shop.marker]
    others = set(shop.others)
    try:
        # an undelivered spool segment that holds the person and someone else
        late_other = visit(shop.others[0], int(time.time() * 1000) - 60_000)
        shop.post(visit(shop.p_anon1, int(time.time() * 1000) - 60_000, marker=shop.marker) + late_other)
        shop.seal()

        # the search finds the person everywhere before: "zero hits" afterwards means something
        before = {name.split("/")[0] for name, _ in hits(local_files(data), needles)}
        assert {"lake", "warehouse", "profiles.db", "highlevel.db", "spool"} <= before, before
        where = {name for name, _ in hits(local_files(data), needles)}
        assert any(n.startswith("lake/rejected/") for n in where) and any(n.startswith("lake/raw/") for n in where)

        store = open_store(shop.settings)
        kept = {t: _rows(store, t, others) for t in ("events", "sessions", "pageviews", "high_level_events")}
        assert all(kept.values()), {t: len(v) for t, v in kept.items()}
        raw_before = sorted((r for r in read_lake(data) if r["anonymous_id"] in others), key=lambda r: r["event_id"])
        events = store.table("events")
        old_snapshot = events.current_snapshot().snapshot_id
        old_metadata = events.metadata_location
        assert len(events.snapshots()) > 1
        profiles = open_profiles(shop.settings.profiles)
        other_profiles = {o: profiles.get("shop", o) or profiles.get("shop", f"user-{o}") for o in shop.others}
        assert all(other_profiles.values()) and profiles.get("shop", shop.p_anon2) is not None
        profiles.close()

        # asked over HTTP with the tenant's admin key, naming one anonymous id only
        r = shop.client.post("/v1/erasures", json={"person": shop.p_anon1}, headers=shop.admin())
        assert r.status_code == 202, r.text
        request_id = r.json()["id"]
        assert shop.client.get(f"/v1/erasures/{request_id}", headers=shop.admin()).json()["state"] == "pending"

        done = carry_out(shop.settings)
        [carried] = done.carried
        assert carried.ids_found == 3  # both anonymous ids and the user id
        assert carried.removed["raw"] >= 9 and carried.removed["spool"] >= 4 and carried.removed["rejected"] == 1
        assert carried.removed["profiles"] == 1 and carried.removed["highlevel_index"] >= 1
        status = shop.client.get(f"/v1/erasures/{request_id}", headers=shop.admin()).json()
        assert status["state"] == "done" and status["removed"]["table_events"] >= 9, status

        found = hits(local_files(data), needles)
        assert found == [], found

        # the others: every row as it was
        store = open_store(shop.settings)
        assert {t: _rows(store, t, others) for t in kept} == kept
        raw_after = sorted((r for r in read_lake(data) if r["anonymous_id"] in others), key=lambda r: r["event_id"])
        assert raw_after == raw_before
        profiles = open_profiles(shop.settings.profiles)
        assert {o: profiles.get("shop", o) or profiles.get("shop", f"user-{o}") for o in shop.others} == other_profiles
        assert all(profiles.get("shop", i) is None for i in shop.p_ids)
        profiles.close()

        # time travel: the snapshot from before is gone, and its files with it
        events = store.table("events")
        assert old_snapshot not in {s.snapshot_id for s in events.snapshots()}
        with pytest.raises((OSError, ValueError)):
            StaticTable.from_metadata(old_metadata).scan(snapshot_id=old_snapshot).to_arrow()

        # the audit log: requested and carried out, hashes of the ids, never the ids
        storage = open_storage(shop.settings.storage)
        keys = storage.list(layout.audit_prefix("shop"))
        kinds = [layout.parse_audit(k).what for k in keys if layout.parse_audit(k).request == request_id]
        assert kinds == ["requested", "carried_out"]
        hasher = id_hasher(storage, None)
        entry = records.get(storage, keys[-1], AuditEntry)
        assert set(entry.id_hashes) == {hasher(i) for i in shop.p_ids} and entry.removed["raw"] >= 9

        # what the spool held for the others is delivered; the person's is not
        shop.deliver()
        delivered = {r["event_id"] for r in read_lake(data)}
        assert {e["event_id"] for e in late_other} <= delivered

        # a late batch for the forgotten person (their second browser) is not resurrected
        late = visit(shop.p_anon2, int(time.time() * 1000) - 30_000, shop.p_user, marker=shop.marker)
        shop.post(late + visit(shop.others[1], int(time.time() * 1000) - 30_000))
        shop.deliver()
        shop.run()
        assert not {e["event_id"] for e in late} & {r["event_id"] for r in read_lake(data)}
        found = hits(local_files(data), needles)
        assert found == [], found
    finally:
        shop.close()
