"""Incremental runs: only people with new events get their profiles recomputed."""

import pytest
from analyze_lake import DAY_MS, START_MS, SimLake


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    lake = SimLake(tmp_path_factory.mktemp("analyze-incremental"), people=60, days=14, seed=3)
    lake.convert()
    lake.first = lake.analyze()
    store = lake.profiles()
    lake.before = {pid: store.get("shop", pid) for pid in store.person_ids("shop")}
    store.close()
    return lake


def test_nothing_new_means_nothing_updated(lake):
    summary = lake.analyze()
    t = summary.tenants[0]
    assert t.updated == 0 and not t.refit and t.people == len(lake.before)


def test_only_people_with_new_events_are_updated(lake):
    # three more days for three people (indexes 0-2: three different personas)
    assert lake.add(3, START_MS + 14 * DAY_MS, only={0, 1, 2}) > 0
    lake.convert()
    summary = lake.analyze()
    t = summary.tenants[0]
    store = lake.profiles()
    after = {pid: store.get("shop", pid) for pid in store.person_ids("shop")}
    store.close()
    changed = {pid for pid in after if after[pid] != lake.before.get(pid)}
    assert not t.refit  # no growth: the segment model is kept, people are assigned to it
    assert t.updated == len(changed) and 1 <= len(changed) <= 3
    for pid in changed:
        old, new = lake.before.get(pid), after[pid]
        assert old is not None and new["features"]["sessions"] > old["features"]["sessions"]
        assert new["updated_at"] > old["updated_at"]
    for pid in set(after) - changed:
        assert after[pid]["updated_at"] == lake.before[pid]["updated_at"]


def test_growth_past_refit_growth_refits_and_updates_everyone(lake):
    lake.people = 90  # 30 new people (and new visits of the first 60) on days 18-19
    lake.add(2, START_MS + 17 * DAY_MS)
    lake.convert()
    t = lake.analyze().tenants[0]
    assert t.refit and t.updated == t.people
    print(f"\n{t.removed} anonymous profile(s) merged into their user's")
    assert t.removed > 0  # people who signed in on those days had anonymous profiles before
    store = lake.profiles()
    docs = [store.get("shop", pid) for pid in store.person_ids("shop")]
    store.close()
    people = {d["person_id"] for d in docs}
    for d in docs:
        if d["user_id"]:
            assert not set(d["anonymous_ids"]) & (people - {d["person_id"]})


def test_full_recomputes_everyone(lake):
    t = lake.analyze(full=True).tenants[0]
    assert t.refit and t.updated == t.people
