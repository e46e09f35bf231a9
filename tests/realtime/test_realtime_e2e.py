"""The realtime stage inside a real ``beaconlake up --workers 2``: statistics merged across
workers, sequences whose steps hit different workers, no double count, restart recovery."""

import time
import uuid

import httpx
import msgspec
import pytest
from support import read_lake, start_collector

pytestmark = pytest.mark.slow

SEQ = {"name": "viewed_then_added", "within_secs": 600,
       "steps": [{"name": "product_view", "where": [{"field": "props.category", "op": "exists"}]},
                 {"name": "add_to_cart"}]}
PEOPLE = 12


def post(c, events):
    now = int(time.time() * 1000)
    for e in events:
        e.setdefault("client_ts", now)
    # a new connection each time, so requests spread over both workers
    r = httpx.post(f"{c.url}/v1/events?k={c.write_key}", headers={"content-type": "text/plain"},
                   content=msgspec.json.encode({"sent_at": now, "events": events}), timeout=10)
    assert r.status_code == 200, r.text


def ev(name, anon, **kw):
    return {"level": kw.pop("level", "mid"), "name": name, "anonymous_id": anon, "event_id": str(uuid.uuid4()),
            "url": kw.pop("url", "https://shop.example/"), "props": kw}


def read(c, path, **params):
    r = httpx.get(f"{c.url}{path}", params=params, headers={"authorization": f"Bearer {c.read_key}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def stats_count(c, name):
    return sum(r["count"] for r in read(c, "/v1/stats", name=name)["rows"])


def test_two_workers_one_pipeline(tmp_path):
    c = start_collector(tmp_path, args=["--workers", "2"], config_overrides={
        "tenant": {"sequences": [SEQ]},
        "realtime": {"browser_grace_secs": 1},
        "counters": {"type": "memory", "partials_interval_secs": 0.2},
    })
    try:
        browser_ids = {}
        for i in range(PEOPLE):
            anon = f"p{i}"
            first = ev("product_view", anon, category="shoes", url=f"https://shop.example/p/{i % 3}")
            post(c, [first, ev("page_view", anon, url=f"https://shop.example/p/{i % 3}")])
            last = ev("add_to_cart", anon, sku="s")
            post(c, [last])  # the last step, in another request: often on the other worker
            if i % 2 == 0:  # the browser saw it too and reports it, in yet another request
                browser_ids[anon] = [first["event_id"], last["event_id"]]
                post(c, [ev("viewed_then_added", anon, level="high", definition="viewed_then_added",
                            matched_event_ids=browser_ids[anon], source="browser")])

        # each reader (either worker) sees what both workers counted
        assert wait_for(lambda: all(stats_count(c, "page_view") == PEOPLE for _ in range(4)))
        paths = read(c, "/v1/stats", name="page_view", group="path", by="hour")["rows"]
        assert sorted((r["path"], r["count"]) for r in paths) == [("/p/0", 4), ("/p/1", 4), ("/p/2", 4)]

        def counted():
            counts = read(c, "/v1/high-level", name="viewed_then_added")["counts"]
            return counts.get("viewed_then_added") == PEOPLE and counts
        assert wait_for(counted), read(c, "/v1/high-level")
        time.sleep(1.5)  # past the grace: nothing more may come
        events = read(c, "/v1/high-level", name="viewed_then_added")["events"]
        assert len(events) == PEOPLE
        assert {e["anonymous_id"]: e["source"] for e in events} == {
            f"p{i}": "browser" if i % 2 == 0 else "server" for i in range(PEOPLE)}
        assert wait_for(lambda: stats_count(c, "viewed_then_added") == PEOPLE)
        # each worker publishes its partials about once a second
        partials = lambda: list((c.data_dir / "realtime" / "partials").glob("collector-*.bin"))  # noqa: E731
        assert wait_for(lambda: len(partials()) == 2), \
            f"both workers should have counted (new connections spread over them): {partials()}"
        c.stop()

        lake = [r for r in read_lake(c.data_dir) if r["level"] == "high"]
        assert sorted(r["anonymous_id"] for r in lake) == sorted(f"p{i}" for i in range(PEOPLE))
        # the lake's source column: what the server detected is the server's, the browser's reports plain HTTP
        assert {r["anonymous_id"]: r["source"] for r in lake} == {
            f"p{i}": "http" if i % 2 == 0 else "server" for i in range(PEOPLE)}

        c.start()  # recovery: statistics and the index are still there
        assert stats_count(c, "page_view") == PEOPLE
        assert len(read(c, "/v1/people/p1/high-level")["events"]) == 1
    finally:
        c.stop()
