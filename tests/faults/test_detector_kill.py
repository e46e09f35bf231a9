"""kill -9 of the lake deliverer while its sequence detector checkpoints pass after pass (a
journal of what each pass changed, a snapshot now and then): every person whose two steps
arrived in different segments, on either side of a kill, gets exactly one server match, naming
exactly their two events."""

from __future__ import annotations

import collections
import random
import time
import uuid

import httpx
import msgspec
import pytest
from fault_checks import wait_until
from fault_procs import kill9, role_pids, wait_role
from support import read_lake

pytestmark = pytest.mark.slow

SEQ = {"name": "viewed_then_added", "within_secs": 600,
       "steps": [{"name": "product_view", "where": [{"field": "props.category", "op": "exists"}]},
                 {"name": "add_to_cart"}]}
ROUNDS, PER_ROUND = 8, 12


def post(c, events: list[dict]) -> None:
    now = int(time.time() * 1000)
    body = msgspec.json.encode({"sent_at": now, "events": [{**e, "client_ts": now} for e in events]})
    r = httpx.post(f"{c.url}/v1/events?k={c.write_key}", headers={"content-type": "text/plain"}, content=body,
                   timeout=10)
    assert r.status_code == 200, r.text


def ev(name: str, anon: str, **props) -> dict:
    return {"level": "mid", "name": name, "anonymous_id": anon, "event_id": str(uuid.uuid4()), "props": props}


def test_kill_9_of_the_deliverer_mid_checkpoints_gives_each_match_once(up):
    c = up(workers=2, tenant={"sequences": [SEQ]}, realtime={"browser_grace_secs": 1},
           spool={"flush_interval_secs": 0.3})
    rng = random.Random(7)
    expected: dict[str, list[str]] = {}
    kills = 0
    for r in range(ROUNDS + 1):
        batch = []
        for i in range(PER_ROUND):
            if r < ROUNDS:  # this round's people view a product...
                first = ev("product_view", f"p{r}-{i}", category="shoes")
                expected[f"p{r}-{i}"] = [first["event_id"]]
                batch.append(first)
            if r > 0:  # ...and last round's add it to their cart: another segment, another pass
                last = ev("add_to_cart", f"p{r - 1}-{i}", sku="s")
                expected[f"p{r - 1}-{i}"].append(last["event_id"])
                batch.append(last)
        for k in range(0, len(batch), 6):
            post(c, batch[k:k + 6])
        time.sleep(rng.uniform(0.3, 0.9))  # segments seal and the deliverer feeds them
        if r % 2 == 1:
            [pid] = wait_role(c.proc.pid, "bl-deliver")
            kill9(pid)
            kills += 1
            wait_role(c.proc.pid, "bl-deliver", exclude={pid})

    def matches() -> collections.Counter:
        rows = [row for row in read_lake(c.data_dir) if row["level"] == "high" and row["name"] == SEQ["name"]]
        return collections.Counter((row["anonymous_id"], tuple(msgspec.json.decode(row["props"])["matched_event_ids"]))
                                   for row in rows)

    wait_until(lambda: len(matches()) >= len(expected), 60, "a match for every person")
    time.sleep(3)  # a duplicate would come within a pass or two
    found = matches()
    assert kills == ROUNDS // 2 and len(role_pids(c.proc.pid, "bl-deliver")) == 1
    assert {anon: list(ids) for (anon, ids), n in found.items()} == expected
    assert set(found.values()) == {1}, [k for k, n in found.items() if n > 1]
    assert (c.data_dir / "realtime" / "detector.journal").exists()  # the passes went to the journal
