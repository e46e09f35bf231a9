"""One behaviour suite for the high-level index, run against SQLite and a real PostgreSQL."""

import time

from beaconlake.backends.highlevel import HighLevelEvent

T0 = 1_764_230_400_000


def hl(i, name="considered_then_added", anon="a1", user=None, tenant="shop", ts=None, source="server"):
    return HighLevelEvent(tenant=tenant, event_id=f"e{i}", name=name, anonymous_id=anon, user_id=user,
                          event_ts=ts if ts is not None else T0 + i * 1000, source=source,
                          matched_event_ids=[f"m{i}a", f"m{i}b"], props='{"definition": "x"}')


def test_search_by_name_and_time_newest_first(index):
    index.add([hl(i, name="a" if i % 2 else "b") for i in range(10)])
    got = index.search("shop", "a", T0 + 2000, T0 + 8000, 100)
    assert [e.event_id for e in got] == ["e7", "e5", "e3"]
    assert got[0].matched_event_ids == ["m7a", "m7b"]
    assert [e.event_id for e in index.search("shop", None, None, None, 2)] == ["e9", "e8"]
    assert index.counts("shop", None, T0, T0 + 4000) == {"a": 2, "b": 2}


def test_indexing_twice_changes_nothing(index):
    index.add([hl(1), hl(2)])
    index.add([hl(1), hl(2)])
    assert index.counts("shop", None, None, None) == {"considered_then_added": 2}


def test_tenants_never_see_each_other(index):
    index.add([hl(1), hl(2, tenant="other", anon="a1")])
    assert [e.event_id for e in index.search("shop", None, None, None, 10)] == ["e1"]
    assert [e.event_id for e in index.person("other", "a1", 10)] == ["e2"]
    assert index.counts("nobody", None, None, None) == {}


def test_person_by_anonymous_id_user_id_and_linked_anonymous_ids(index):
    index.add([hl(1, anon="a1"), hl(2, anon="a2", user="u1"), hl(3, anon="a3")],
              identities=[("shop", "a1", "u1")])
    assert [e.event_id for e in index.person("shop", "a1", 10)] == ["e1"]
    # before login (a1) and after (a2 with the user id); a3 is someone else
    assert [e.event_id for e in index.person("shop", "u1", 10)] == ["e2", "e1"]


def test_answers_in_milliseconds_with_many_events(index):
    index.add([hl(i, name=f"d{i % 100}", anon=f"p{i % 5000}") for i in range(20_000)])
    start = time.perf_counter()
    for _ in range(20):
        index.search("shop", "d7", T0, T0 + 20_000_000, 100)
        index.person("shop", "p42", 100)
    per_query = (time.perf_counter() - start) / 40
    assert per_query < 0.02, f"{per_query * 1000:.1f} ms per query"
