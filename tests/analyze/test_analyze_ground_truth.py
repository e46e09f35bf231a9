"""The analyze stage against the simulator's ground truth: segments find the personas back,
traits rank the personas as their definitions say, the propensity model beats chance."""

from statistics import mean

from analyze_lake import by_persona
from sklearn.metrics import adjusted_rand_score


def test_segments_recover_personas(shop):
    truth = [shop.persona_of[d["person_id"]] for d in shop.docs]
    found = [d["segment"]["id"] for d in shop.docs]
    ari = adjusted_rand_score(truth, found)
    t = shop.summary.tenants[0]
    print(f"\nsegments: k={t.segments} silhouette={t.silhouette} adjusted Rand index vs personas = {ari:.3f}")
    assert t.segments == 5
    assert ari > 0.8


def test_segment_labels_name_what_sets_them_apart(shop):
    groups = by_persona(shop, shop.docs)
    label_of = {p: max({d["segment"]["label"] for d in ds}, key=[d["segment"]["label"] for d in ds].count)
                for p, ds in groups.items()}
    print(label_of)
    assert "sale hunters" in label_of["bargain_hunter"]
    assert "night owls" in label_of["window_shopper"]
    assert len(set(label_of.values())) == 5


def trait_means(shop, trait):
    out = {}
    for persona, docs in by_persona(shop, shop.docs).items():
        scores = [d["traits"][trait]["score"] for d in docs if d["traits"][trait]["score"] is not None]
        out[persona] = mean(scores) if scores else None
    return out


def test_traits_rank_personas_as_defined(shop):
    m = {t: trait_means(shop, t) for t in ("engagement", "decisiveness", "exploration", "price_sensitivity",
                                            "loyalty", "impulsiveness")}
    for t, v in m.items():
        print(t, {p: None if s is None else round(s, 2) for p, s in sorted(v.items())})
    # engagement: long, deep reading; window shoppers glance at one page
    assert max(m["engagement"], key=m["engagement"].get) == "researcher"
    assert min(m["engagement"], key=m["engagement"].get) == "window_shopper"
    # exploration: researchers read every category, the others a few
    assert max(m["exploration"], key=m["exploration"].get) == "researcher"
    # price sensitivity: the sale pages are the bargain hunters'
    assert max(m["price_sensitivity"], key=m["price_sensitivity"].get) == "bargain_hunter"
    assert m["price_sensitivity"]["bargain_hunter"] > 0.5 > m["price_sensitivity"]["researcher"]
    # decisiveness: regulars buy after a few pages; researchers after many, slowly
    dec = {p: s for p, s in m["decisiveness"].items() if s is not None}
    assert dec["loyal_regular"] > dec["weekend_camper"] > dec["researcher"]
    # loyalty: frequent, steady, repeat buyers vs rare visitors
    assert m["loyalty"]["loyal_regular"] > m["loyalty"]["weekend_camper"] > m["loyalty"]["window_shopper"]
    assert min(m["loyalty"], key=m["loyalty"].get) == "window_shopper"
    # impulsiveness: many cart adds after short looks
    assert max(m["impulsiveness"], key=m["impulsiveness"].get) == "bargain_hunter"


def test_decisiveness_is_undefined_without_a_conversion(shop):
    for d in shop.docs:
        converted = d["features"]["conversions"] > 0
        assert (d["traits"]["decisiveness"]["score"] is not None) == converted, d["person_id"]


def test_propensity_beats_chance_on_held_out_time(shop):
    t = shop.summary.tenants[0]
    print(f"\npropensity: ROC AUC on held-out time = {t.auc}")
    assert t.auc is not None and t.auc > 0.7
    probs = {p: mean(d["propensity"]["probability"] for d in ds) for p, ds in by_persona(shop, shop.docs).items()}
    print({p: round(v, 3) for p, v in probs.items()})
    assert probs["loyal_regular"] > probs["window_shopper"]
    assert all(d["propensity"]["goal"] == "purchase" and d["propensity"]["days"] == 7 for d in shop.docs)


def test_profiles_are_stitched_to_users(shop):
    users = [d for d in shop.docs if d["user_id"]]
    assert users, "the simulation signs some people in"
    for d in users:
        assert d["person_id"] == d["user_id"]
        assert d["anonymous_ids"]
    # no separate anonymous profile is left for a browser that belongs to a user
    anon_of_users = {a for d in users for a in d["anonymous_ids"]}
    assert not anon_of_users & {d["person_id"] for d in shop.docs}


def test_interests_follow_engaged_time(shop):
    for persona, docs in by_persona(shop, shop.docs).items():
        top = [d["interests"][0]["category"] for d in docs if d["interests"]]
        favourite = max(set(top), key=top.count)
        expected = {"bargain_hunter": "sale", "weekend_camper": "tents", "window_shopper": "jackets"}.get(persona)
        if expected:
            assert favourite == expected, persona
        for d in docs:
            w = [i["weight"] for i in d["interests"]]
            assert w == sorted(w, reverse=True) and all(0 < x <= 1 for x in w)
