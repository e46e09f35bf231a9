"""The read API through the real collector app: auth, tenant isolation, stats, high-level events."""

import time
import uuid

import msgspec
import pytest
from serve.conftest import OTHER_READ, OTHER_WRITE, READ_KEY, WRITE_KEY

from beaconlake.up import build_deliverer


def send(client, *events, key=WRITE_KEY):
    now = int(time.time() * 1000)
    for e in events:
        e.setdefault("client_ts", now)
        e.setdefault("event_id", str(uuid.uuid4()))
    r = client.post(f"/v1/events?k={key}", content=msgspec.json.encode({"sent_at": now, "events": list(events)}),
                    headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    return [e["event_id"] for e in events]


def ev(name, anon, level="mid", **props):
    return {"level": level, "name": name, "anonymous_id": anon, "url": props.pop("url", "https://shop.example/"),
            "props": props}


def get(client, path, key=READ_KEY, **params):
    return client.get(path, params=params, headers={"authorization": f"Bearer {key}"} if key else {})


def deliver_pass(client):
    """What the deliverer process does: seal the worker's segment, then one realtime + lake pass."""
    client.portal.call(client.app.collector.writer.seal)
    d = build_deliverer(client.settings)  # with the realtime consumer, as `up` builds it
    d.run_once()  # feeds the detector; a match with no browser report and grace 0 is due at once
    d.run_once()  # delivers the detector's own segment: indexes and counts the server's matches
    d.close()


def test_reading_needs_the_tenants_read_key(app):
    for key in (None, WRITE_KEY, "rk_nopenopenopenopenope"):
        r = get(app, "/v1/stats", key=key, name="page_view")
        assert r.status_code == 401, key
        assert "read key" in r.json()["error"] and r.headers["www-authenticate"].startswith("Bearer")
    assert get(app, "/v1/stats", name="page_view").status_code == 200


def test_stats_per_minute_hour_and_path_merge_what_was_sent(app):
    send(app, ev("page_view", "a1", url="https://shop.example/p/1?x=1"), ev("page_view", "a2", url="https://shop.example/p/1"),
         ev("page_view", "a1", url="https://shop.example/"), ev("page_leave", "a1", engaged_ms=1000, max_scroll_pct=50))
    send(app, ev("page_leave", "a2", engaged_ms=3000, max_scroll_pct=100))
    [row] = get(app, "/v1/stats", name="page_view").json()["rows"]
    assert (row["count"], row["distinct_anonymous_ids"], row["path"]) == (3, 2, None)
    paths = get(app, "/v1/stats", name="page_view", group="path").json()["rows"]
    assert sorted((r["path"], r["count"]) for r in paths) == [("/", 1), ("/p/1", 2)]
    body = get(app, "/v1/stats", name="page_leave", by="hour").json()
    [hour] = body["rows"]
    assert hour["props"]["engaged_ms"] == {"count": 2, "sum": 2000 * 2, "min": 1000, "max": 3000, "mean": 2000,
                                           "stddev": 1000}
    assert body["distinct_standard_error"] == 0.00813
    # the other tenant's key sees none of it
    assert get(app, "/v1/stats", key=OTHER_READ, name="page_view").json()["rows"] == []


@pytest.mark.parametrize("params, fragment", [
    ({"name": "page_view", "by": "week"}, "by='week' is not allowed; use one of minute, hour, day"),
    ({"name": "page_view", "group": "referrer"}, "group='referrer' is not allowed; use one of path"),
    ({"name": "Page View!"}, "is not an event name"),
    ({}, "name is required"),
    ({"name": "page_view", "from": "yesterday"}, "from='yesterday' is not a time"),
    ({"name": "page_view", "from": "2026-01-02", "to": "2026-01-01"}, "must be before to="),
    ({"name": "page_view", "from": "2000-01-01", "to": "2026-01-01", "by": "minute"}, "limit 10000"),
])
def test_bad_parameters_get_400_naming_the_value(app, params, fragment):
    r = get(app, "/v1/stats", **params)
    assert r.status_code == 400
    assert fragment in r.json()["error"]


def test_high_level_server_matches_and_browser_reports_without_double_counting(app):
    steps = lambda anon: [ev("product_view", anon, category="shoes"), ev("product_view", anon, category="shoes"),
                          ev("add_to_cart", anon, sku="x")]
    server_only = send(app, *steps("s1"))
    browser = send(app, *steps("b1"))
    send(app, ev("considered_then_added", "b1", level="high", definition="considered_then_added",
                 matched_event_ids=browser, source="browser"))
    send(app, {**ev("identify", "s1"), "user_id": "user-7"})  # s1 logs in after the match
    other = send(app, *steps("o1"), key=OTHER_WRITE)
    deliver_pass(app)

    body = get(app, "/v1/high-level", name="considered_then_added").json()
    assert body["counts"] == {"considered_then_added": 2}
    by_person = {e["anonymous_id"]: e for e in body["events"]}
    assert by_person["s1"]["source"] == "server" and by_person["s1"]["matched_event_ids"] == server_only
    assert by_person["b1"]["source"] == "browser"
    assert [e["source"] for e in get(app, "/v1/people/s1/high-level").json()["events"]] == ["server"]
    assert [e["anonymous_id"] for e in get(app, "/v1/people/user-7/high-level").json()["events"]] == ["s1"]
    assert get(app, "/v1/people/o1/high-level").json()["events"] == []  # another tenant's person
    assert get(app, "/v1/people/o1/high-level", key=OTHER_READ).json()["events"][0]["matched_event_ids"] == other
    # counted like any event: one browser report + one server match for this tenant
    [row] = get(app, "/v1/stats", name="considered_then_added").json()["rows"]
    assert row["count"] == 2
    assert get(app, "/v1/high-level", limit="0").status_code == 400


def test_an_out_of_range_number_costs_its_batch_nothing_in_the_stats(app):
    """2**2000 and 1e400 (valid JSON, past a double) are refused at the door, event by event;
    1e308 is accepted, but its square is past a double: it is left out of sum, mean and stddev
    and counted as skipped, and every accepted event of the batch is counted."""
    now = int(time.time() * 1000)
    body = ('{"sent_at": %d, "events": [' % now + ", ".join(
        '{"level": "mid", "name": "page_leave", "anonymous_id": "a%d", "client_ts": %d, "url": "https://shop.example/x", '
        '"props": {"engaged_ms": %s, "max_scroll_pct": 50}}' % (i, now, v)
        for i, v in enumerate(["1000", str(2**2000), "1e400", "1e308", "3000"])) + "]}").encode()
    r = app.post(f"/v1/events?k={WRITE_KEY}", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
    assert [(x["index"], x["reason"]) for x in r.json()["rejected"]] == [(1, "invalid_number"), (2, "invalid_number")]
    [row] = get(app, "/v1/stats", name="page_leave").json()["rows"]
    assert row["count"] == 3 and row["distinct_anonymous_ids"] == 3
    assert row["props"]["engaged_ms"] == {"count": 2, "sum": 4000, "min": 1000, "max": 3000, "mean": 2000, "stddev": 1000}
    assert row["props"]["max_scroll_pct"]["count"] == 3
    [by_path] = get(app, "/v1/stats", name="page_leave", group="path").json()["rows"]
    assert by_path["count"] == 3 and by_path["props"]["engaged_ms"]["count"] == 2
    metrics = app.get("/metrics").text
    assert "beaconlake_stats_skipped_values_total 1" in metrics
    assert 'destination="stats"' not in metrics  # the stats destination never failed on the batch
