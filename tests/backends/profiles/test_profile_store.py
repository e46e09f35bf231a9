"""The profile store's behaviour, run against every backend (SQLite and PostgreSQL)."""

from beaconlake.backends.profiles import TRAITS, Row, Search


def profile(pid, tenant="shop", user=None, anons=(), segment=("s1", "sale hunters, evening visitors"),
            engagement=0.5, last_seen=1_000, interests=("sale",), propensity=0.2):
    doc = {
        "person_id": pid, "tenant": tenant, "user_id": user, "anonymous_ids": list(anons),
        "first_seen": "2026-01-01T00:00:00.000Z", "last_seen": "2026-01-02T00:00:00.000Z",
        "features": {"sessions": 3, "first_utm_source": "news"},
        "traits": {t: {"score": engagement if t == "engagement" else 0.1, "features": {"x": 1}} for t in TRAITS},
        "segment": {"id": segment[0], "label": segment[1]} if segment else None,
        "interests": [{"category": c, "weight": 1.0 / len(interests)} for c in interests],
        "propensity": {"goal": "purchase", "days": 7, "probability": propensity},
        "high_level": {"considered_then_added": 2}, "updated_at": "2026-01-03T00:00:00.000Z",
        "first_seen_ms": 0, "last_seen_ms": last_seen, "updated_at_ms": 5,
    }
    return Row(tenant, pid, doc)


def test_lookup_by_person_user_or_anonymous_id(store):
    store.upsert([profile("u1", user="u1", anons=["a1", "a2"]), profile("b1", anons=["b1"])])
    for any_id in ("u1", "a1", "a2"):
        doc = store.get("shop", any_id)
        assert doc["person_id"] == "u1" and doc["anonymous_ids"] == ["a1", "a2"]
    assert store.get("shop", "b1")["person_id"] == "b1"
    assert store.get("shop", "nobody") is None
    assert "last_seen_ms" not in store.get("shop", "u1")  # the store's helper fields are not served
    assert store.get("shop", "u1")["high_level"] == {"considered_then_added": 2}


def test_tenants_never_see_each_other(store):
    store.upsert([profile("a1", anons=["a1"]), profile("a1", tenant="other", anons=["a1"], engagement=0.9)])
    assert store.get("shop", "a1")["traits"]["engagement"]["score"] == 0.5
    assert store.get("other", "a1")["traits"]["engagement"]["score"] == 0.9
    assert store.count("shop") == 1 and store.person_ids("other") == ["a1"]
    assert store.search("shop", Search())[1] == 1


def test_upsert_replaces_the_document_and_its_ids(store):
    store.upsert([profile("u1", user="u1", anons=["a1", "a2"])])
    store.upsert([profile("u1", user="u1", anons=["a1"], engagement=0.8)])
    assert store.get("shop", "a2") is None  # an id the profile no longer has
    assert store.get("shop", "a1")["traits"]["engagement"]["score"] == 0.8
    assert store.count("shop") == 1


def test_delete(store):
    store.upsert([profile("a1", anons=["a1"]), profile("u1", user="u1", anons=["a9"])])
    assert store.delete("shop", ["a1", "missing"]) == 1
    assert store.get("shop", "a1") is None and store.get("shop", "a9")["person_id"] == "u1"
    assert store.delete("shop", []) == 0


def test_search_filters_sorts_and_counts(store):
    store.upsert([
        profile("p1", anons=["p1"], engagement=0.9, last_seen=30, interests=("tents", "stoves"),
                segment=("s2", "deep scrollers, weekenders"), propensity=0.7),
        profile("p2", anons=["p2"], engagement=0.75, last_seen=10, interests=("sale",)),
        profile("p3", anons=["p3"], engagement=0.2, last_seen=20, interests=("sale", "boots")),
        profile("p4", anons=["p4"], engagement=0.8, last_seen=40, segment=None, propensity=None, interests=("jackets",)),
    ])
    ids = lambda r: [d["person_id"] for d in r[0]]
    assert ids(store.search("shop", Search())) == ["p4", "p1", "p3", "p2"]  # last seen first
    assert ids(store.search("shop", Search(sort="last_seen", descending=False))) == ["p2", "p3", "p1", "p4"]
    r = store.search("shop", Search(traits=[("engagement", ">", 0.7)], sort="engagement"))
    assert ids(r) == ["p1", "p4", "p2"] and r[1] == 3
    assert ids(store.search("shop", Search(traits=[("engagement", ">", 0.7), ("engagement", "<=", 0.8)]))) == ["p4", "p2"]
    assert ids(store.search("shop", Search(segment="s1"))) == ["p3", "p2"]
    assert ids(store.search("shop", Search(q="sale"))) == ["p3", "p2"]
    assert ids(store.search("shop", Search(q="weekenders"))) == ["p1"]  # the segment label is searched too
    assert ids(store.search("shop", Search(q="sale boots"))) == ["p3"]  # every word must match
    assert ids(store.search("shop", Search(q="kayaks"))) == []
    assert ids(store.search("shop", Search(sort="propensity"))) == ["p1", "p2", "p3", "p4"]  # NULL last
    page = store.search("shop", Search(limit=2, offset=1))
    assert ids(page) == ["p1", "p3"] and page[1] == 4


def test_search_text_is_not_query_syntax(store):
    store.upsert([profile("p1", anons=["p1"], interests=("sale",))])
    for q in ('sale"', "sale OR", "NEAR(sale)", "*", "sale AND -", "'; drop table profiles; --"):
        docs, total = store.search("shop", Search(q=q))
        assert total == len(docs) <= 1
    assert store.count("shop") == 1


def test_segments_with_live_sizes(store):
    store.set_segments("shop", [
        {"id": "s1", "label": "sale hunters", "centroid": {"sale_share": 0.8}, "distinguishing": []},
        {"id": "s2", "label": "deep scrollers", "centroid": {"sale_share": 0.0}, "distinguishing": []},
    ])
    store.upsert([profile("p1", anons=["p1"]), profile("p2", anons=["p2"]),
                  profile("p3", anons=["p3"], segment=("s2", "deep scrollers"))])
    segs = store.segments("shop")
    assert [(s["id"], s["size"], s["label"]) for s in segs] == [("s1", 2, "sale hunters"), ("s2", 1, "deep scrollers")]
    assert segs[0]["centroid"] == {"sale_share": 0.8}
    store.set_segments("shop", [{"id": "s1", "label": "new", "centroid": {}, "distinguishing": []}])
    assert [s["label"] for s in store.segments("shop")] == ["new"]
    assert store.segments("other") == []


def test_meta_round_trip(store):
    assert store.get_meta("shop", "watermark") is None
    store.set_meta("shop", "watermark", 123)
    store.set_meta("shop", "model", {"k": 3, "mean": [0.5, 1.0]})
    store.set_meta("shop", "watermark", 456)
    assert store.get_meta("shop", "watermark") == 456
    assert store.get_meta("shop", "model") == {"k": 3, "mean": [0.5, 1.0]}
    assert store.get_meta("other", "watermark") is None
