"""Server-side sequence detection: the browser's rules, per person, bounded, restartable."""

import msgspec

from beaconlake import config
from beaconlake.config import Predicate
from beaconlake.realtime.predicates import compile_test
from beaconlake.realtime.predicates import test as reference_test
from beaconlake.realtime.sequences import Detector, Seen

T0 = 1_764_230_400_000
S = 1000
CONSIDERED = {
    "name": "considered_then_added", "within_secs": 600,
    "steps": [
        {"name": "product_view", "where": [{"field": "props.category", "op": "exists"}]},
        {"name": "product_view", "same": ["props.category"]},
        {"name": "add_to_cart", "where": [{"field": "props.price", "op": "gte", "value": 10}]},
    ],
}
ABANDONED = {"name": "abandoned_cart", "within_secs": 60, "steps": [{"name": "add_to_cart"}],
             "not_followed_by": {"name": "checkout", "within_secs": 1800}}
SEARCHED = {"name": "searched_shoes", "within_secs": 300, "steps": [
    {"name": "search", "where": [{"field": "props.q", "op": "in", "value": ["shoes", "boots"]}]},
    {"name": "page_view", "where": [{"field": "url", "op": "prefix", "value": "https://shop.example/p/"},
                                    {"field": "props.ref", "op": "ne", "value": "ad"}]},
]}


def detector(*defs, grace=0):
    tenant = {"id": "shop", "write_key": "wk_" + "a" * 20, "read_key": "rk_" + "b" * 20, "sequences": list(defs)}
    settings = config.parse({"tenants": [tenant]}, __import__("pathlib").Path("/tmp"), environ={})
    return Detector(settings.tenants, grace * 1000, 200)


class Person:
    def __init__(self, det, anon="a1", session="s1"):
        self.det, self.anon, self.session, self.n = det, anon, session, 0

    def ev(self, name, t, level="mid", url=None, now=None, **props):
        self.n += 1
        eid = f"{self.anon}-{self.n}"
        self.det.feed("shop", Seen(eid, level, name, self.anon, None, self.session, T0 + t * S, url, None, None,
                                   props or None), now if now is not None else T0 + t * S)
        return eid


def due(det, t):
    return [(m.definition, m.event_ids) for m in det.due(T0 + t * S)]


def test_steps_in_order_with_predicates_and_same():
    det = detector(CONSIDERED)
    p = Person(det)
    a = p.ev("product_view", 0, category="shoes")
    p.ev("product_view", 1, category="hats")  # not the same category as a: skipped
    p.ev("page_view", 2)
    c = p.ev("product_view", 3, category="shoes")
    p.ev("add_to_cart", 4, price=5)  # price below 10
    assert due(det, 100) == []
    d = p.ev("add_to_cart", 5, price=12.5)
    assert due(det, 100) == [("considered_then_added", [a, c, d])]
    m = det.state.tenants["shop"]  # once: the events of a match take part in no later match
    p.ev("add_to_cart", 6, price=20)
    assert due(det, 100) == [] and m.pending == {}


def test_predicate_ops_in_prefix_ne_and_missing_fields():
    det = detector(SEARCHED)
    p = Person(det)
    s = p.ev("search", 0, q="boots")
    p.ev("page_view", 1, url="https://shop.example/p/1", ref="ad")  # ne fails
    p.ev("page_view", 2, url="https://shop.example/about")  # prefix fails
    v = p.ev("page_view", 3, url="https://shop.example/p/2")  # ref missing: ne holds
    assert due(det, 10) == [("searched_shoes", [s, v])]
    q = Person(det, anon="a2")
    q.ev("search", 0, q=1)  # a number is not in ["shoes", "boots"]
    q.ev("page_view", 1, url="https://shop.example/p/2")
    assert due(det, 10) == []


def test_window_expiry_no_match_past_within_secs():
    det = detector(CONSIDERED)
    p = Person(det)
    p.ev("product_view", 0, category="shoes")
    p.ev("product_view", 300, category="shoes")
    p.ev("add_to_cart", 601, price=50)  # 601 s after the first step
    assert due(det, 2000) == []
    p.ev("add_to_cart", 850, price=50)  # but within 600 s of the second view... which needs a pair
    assert due(det, 2000) == []


def test_across_sessions_and_only_per_person():
    det = detector(CONSIDERED)
    p, q = Person(det, session="s1"), Person(det, anon="a2")
    a = p.ev("product_view", 0, category="shoes")
    q.ev("product_view", 1, category="shoes")
    p.session = "s2"  # a new visit, same browser
    b = p.ev("product_view", 200, category="shoes")
    q.ev("add_to_cart", 201, price=99)  # q saw only one product
    c = p.ev("add_to_cart", 300, price=99)
    got = det.due(T0 + 1000 * S)
    assert [(m.anonymous_id, m.event_ids, m.session_id) for m in got] == [("a1", [a, b, c], "s2")]


def test_not_followed_by_cancels_or_emits_after_its_deadline():
    det = detector(ABANDONED)
    p, q = Person(det), Person(det, anon="a2")
    pa = p.ev("add_to_cart", 0)
    qa = q.ev("add_to_cart", 0)
    q.ev("checkout", 100)  # within 1800 s: cancels q's
    assert due(det, 1799) == []  # p's waits for its deadline
    assert due(det, 1800) == [("abandoned_cart", [pa])]
    assert qa


def test_negation_that_arrived_before_the_step_it_negates_still_cancels():
    """Two workers' segments fed out of order: the checkout (later in event time) is fed before
    the add_to_cart it follows. Found by the spool-vs-lake end-to-end test."""
    det = detector(ABANDONED)
    p = Person(det)
    p.ev("checkout", 100)
    p.ev("add_to_cart", 0)  # arrives after the checkout that follows it
    assert due(det, 5000) == []
    q = Person(det, anon="a2")
    q.ev("checkout", 50)  # before the add_to_cart: negates nothing
    qa = q.ev("add_to_cart", 60)
    p.ev("checkout", 70)  # another person's
    assert due(det, 5000) == [("abandoned_cart", [qa])]


def test_late_event_is_slotted_in_event_time_order():
    det = detector(CONSIDERED)
    p = Person(det)
    a = p.ev("product_view", 0, category="shoes")
    c = p.ev("add_to_cart", 20, price=30)
    assert due(det, 100) == []
    b = p.ev("product_view", 10, category="shoes", now=T0 + 25 * S)  # arrives after the add_to_cart
    assert due(det, 100) == [("considered_then_added", [a, b, c])]


def test_browser_report_before_or_after_detection_means_no_second_event():
    for report_first in (True, False):
        det = detector(CONSIDERED, grace=30)
        p = Person(det)
        ids = [p.ev("product_view", 0, category="x"), p.ev("product_view", 1, category="x")]
        report = {"definition": "considered_then_added", "source": "browser"}
        if report_first:  # the browser's batch reached another worker's segment first
            p.ev("considered_then_added", 2, level="high", matched_event_ids=[*ids, "a1-3"], **report)
            p.n -= 1
        last = p.ev("add_to_cart", 2, price=10)
        if not report_first:
            p.ev("considered_then_added", 3, level="high", matched_event_ids=[*ids, last], **report)
        assert due(det, 1000) == [], report_first
    # without a report, the server's match is emitted once the grace is over
    det = detector(CONSIDERED, grace=30)
    p = Person(det)
    p.ev("product_view", 0, category="x")
    p.ev("product_view", 1, category="x")
    p.ev("add_to_cart", 2, price=10)
    assert due(det, 31) == []
    assert len(due(det, 32)) == 1


def test_state_is_bounded_and_survives_a_restart():
    det = detector(CONSIDERED, ABANDONED)
    for i in range(1000):  # many people, many events, far more than the cap per person
        p = Person(det, anon=f"p{i % 50}")
        p.n = i * 1000
        p.ev("product_view", i, category=f"c{i}")
    busy = Person(det, anon="busy")
    for i in range(500):  # within one window: only the cap bounds it
        busy.ev("add_to_cart", 1000)
    people = det.state.tenants["shop"].people
    assert len(people["busy"].history) == 200 and all(len(x.history) <= 200 for x in people.values())
    det.due(T0 + 10_000 * S)
    det.expire(T0 + 10_000 * S)  # idle past the longest window: forgotten
    assert det.state.tenants["shop"].people == {}

    det = detector(CONSIDERED, ABANDONED)
    p = Person(det)
    a = p.ev("product_view", 0, category="shoes")
    b = p.ev("product_view", 1, category="shoes")
    saved = det.dump()
    again = detector(CONSIDERED, ABANDONED)
    again.load(saved)
    p.det = again
    p.ev("page_view", 2)
    c = p.ev("add_to_cart", 3, price=11)
    assert sorted(due(again, 5000)) == [("abandoned_cart", [c]), ("considered_then_added", [a, b, c])]
    replayed = msgspec.msgpack.decode(saved)
    assert replayed  # the checkpoint is plain msgpack


def test_replayed_events_are_not_fed_twice():
    det = detector(ABANDONED)
    seen = Seen("same-id", "mid", "add_to_cart", "a1", None, None, T0, None, None, None, None)
    det.feed("shop", seen, T0)
    det.feed("shop", seen, T0)
    assert len(det.due(T0 + 10_000 * S)) == 1


def test_eq_is_json_equality_numbers_but_not_booleans():
    det = detector({"name": "one", "within_secs": 60, "steps": [
        {"name": "add_to_cart", "where": [{"field": "props.qty", "op": "eq", "value": 1}]}]})
    p = Person(det)
    p.ev("add_to_cart", 0, qty=True)  # true is not 1
    p.ev("add_to_cart", 1, qty="1")  # nor is "1"
    b = p.ev("add_to_cart", 2, qty=1.0)  # but 1.0 is
    assert due(det, 100) == [("one", [b])]


def test_compiled_predicates_agree_with_the_reference_test():
    values = [None, 0, 1, 1.0, 2.5, -3, True, False, "", "sale", "sale/boots", "10", [1], {"a": 1}, float("nan")]
    for op in ("eq", "ne", "in", "prefix", "gte", "gt", "lte", "lt", "exists"):
        for x in (1, 2.5, 0, "sale", True, [1, "sale"]):
            if op == "exists":
                p = Predicate(field="props.x", op=op)
            else:
                p = Predicate(field="props.x", op=op, value=x)
            compiled = compile_test(p)
            for v in values:
                assert compiled(v) == reference_test(v, p), (op, x, v)
