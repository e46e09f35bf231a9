"""Visits of simulated people, as the browser tracker would send their events.

``visits(people, days, seed, start_ms)`` yields one ``Visit`` (a browsing session) at a time, in
order of start time day by day, so a demo can replay them as they come. The same arguments always
give the same events (ids included): tests compare runs.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from beaconlake.simulate.personas import PERSONAS, PRICES, SEARCHES, Persona
from beaconlake.units import DAY_MS

SHOP = "https://shop.example"
DESKTOP_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")
MOBILE_UAS = (
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.5 Mobile/15E148 Safari/604.1"),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
     "Mobile Safari/537.36"),
)
LIBRARY = {"name": "beaconlake.js", "version": "0.1.0"}
MAX_CLICKS_PER_PAGE = 8


@dataclass
class Visit:
    """One session of one simulated person: the events the tracker would send, in time order."""

    anonymous_id: str
    persona: str  # the persona's name
    user_id: str | None  # the user id the person is signed in as by the end of the visit
    events: list[dict]  # client event JSON, as POST /v1/events accepts it
    user_agent: str
    person: int  # index of the person in the simulation
    start_ms: int = 0


@dataclass
class _Person:
    index: int
    persona: Persona
    anonymous_id: str
    user_id: str | None = None
    sessions: int = 0
    rng: random.Random = field(default_factory=random.Random)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: the means here are small.
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def visits(people: int, days: int, seed: int, start_ms: int) -> Iterator[Visit]:
    """Simulate ``people`` people (personas in turn: person i is ``PERSONAS[i % len]``) over ``days``
    days from ``start_ms`` (UTC midnight recommended: visit hours are UTC)."""
    if people < 1 or days < 1:
        raise ValueError(f"visits(people={people}, days={days}): both must be at least 1")
    master = random.Random(seed)
    crowd = []
    for i in range(people):
        # The people (their anonymous ids) depend on the seed only, their visits on the start too:
        # a later call with a later start_ms continues the same people with new events.
        anonymous_id = _uuid(master)
        rng = random.Random(f"{seed}/{i}/{start_ms}")
        crowd.append(_Person(i, PERSONAS[i % len(PERSONAS)], anonymous_id, rng=rng))
    for d in range(days):
        day_start = start_ms + d * DAY_MS
        weekend = (day_start // DAY_MS + 4) % 7 in (0, 6)  # 1970-01-01 was a Thursday; 0 = Sunday
        today: list[Visit] = []
        for person in crowd:
            p = person.persona
            # The weekend bias moves visits between days; the weekly mean stays visits_per_week.
            mean_factor = (5 + 2 * p.weekend_bias) / 7
            rate = p.visits_per_week / 7 * (p.weekend_bias if weekend else 1.0) / mean_factor
            at = day_start + person.rng.choice(p.hours) * 3_600_000 + person.rng.randrange(3_600_000)
            for _ in range(min(3, _poisson(person.rng, rate))):
                visit = _visit(person, at)
                today.append(visit)
                # the next visit of the day comes after a pause that starts a new session
                at = visit.events[-1]["client_ts"] + person.rng.randrange(45, 180) * 60_000
        today.sort(key=lambda v: (v.start_ms, v.person))
        yield from today


class _Page:
    """Builds one page view's events: page_view, its low-level events, page_leave."""

    def __init__(self, visit: _VisitBuilder, url: str, title: str, referrer: str | None) -> None:
        self.v, self.url, self.title, self.referrer = visit, url, title, referrer
        self.id = _uuid(visit.rng)
        self.index = 0

    def event(self, ts: int, level: str, name: str, props: dict) -> dict:
        v = self.v
        ev = {"event_id": _uuid(v.rng), "level": level, "name": name, "anonymous_id": v.person.anonymous_id,
              "session_id": v.session_id, "client_ts": ts, "url": self.url, "title": self.title, "props": props,
              "context": {**v.context, "session_index": v.person.sessions, "page_view_id": self.id,
                          "event_index": self.index}}
        if v.person.user_id is not None:
            ev["user_id"] = v.person.user_id
        if self.referrer is not None and name == "page_view":
            ev["referrer"] = self.referrer
        self.index += 1
        v.events.append(ev)
        return ev


class _VisitBuilder:
    def __init__(self, person: _Person, start: int) -> None:
        self.person, self.rng, self.p = person, person.rng, person.persona
        person.sessions += 1
        self.session_id = _uuid(self.rng)
        self.mobile = self.rng.random() < self.p.mobile_p
        self.ua = self.rng.choice(MOBILE_UAS) if self.mobile else DESKTOP_UA
        screen = "390x844" if self.mobile else "1920x1080"
        self.context = {"locale": "en-GB", "tz": "Europe/London", "screen": screen,
                        "viewport": "390x664" if self.mobile else "1536x864", "library": LIBRARY}
        self.events: list[dict] = []
        self.ts = start
        self.cart: list[float] = []
        self.last_url: str | None = None

    def page(self, path: str, title: str, referrer: str | None = None) -> _Page:
        url = SHOP + path
        page = _Page(self, url, title, referrer if referrer is not None else self.last_url)
        self.last_url = url.split("?", 1)[0]
        return page

    def identify(self, page: _Page) -> None:
        self.person.user_id = f"user-{self.person.index:06d}"
        page.event(self.tick(400), "mid", "identify", {"traits": {"persona_hint": None}})

    def tick(self, ms: int) -> int:
        self.ts += ms
        return self.ts

    def browse(self, page: _Page, category: str | None, product: str | None) -> None:
        """Time on the page: scrolls, pointer or touch, clicks, maybe an add to cart, then page_leave."""
        rng, p = self.rng, self.p
        dwell_ms = int(1000 * min(600.0, p.dwell_secs[0] * math.exp(rng.gauss(0, p.dwell_secs[1]))))
        depth = rng.randint(*p.scroll)
        start = self.ts
        low: list[tuple[int, str, dict]] = []
        for k in range(1, 1 + min(4, 1 + dwell_ms // 8000)):
            low.append((start + dwell_ms * k // 5, "scroll", {"x": 0, "y": 400 * k, "depth_pct": depth * k // 4}))
        for _ in range(3):
            t = start + rng.randrange(max(1, dwell_ms))
            if self.mobile:
                low.append((t, "touch", {"phase": "move", "touches": 1, "x": 180, "y": 400}))
            else:
                low.append((t, "pointer_move", {"x": rng.randrange(1500), "y": rng.randrange(800), "pointer": "mouse"}))
        for _ in range(min(MAX_CLICKS_PER_PAGE, _poisson(rng, p.clicks_per_page))):
            t = start + rng.randrange(max(1, dwell_ms))
            low.append((t, "click", {"x": rng.randrange(1500), "y": rng.randrange(800), "target": "div.product>button",
                                     "pointer": "touch" if self.mobile else "mouse", "button": 0}))
        if rng.random() < p.rage_click_p:
            t = start + rng.randrange(max(1, dwell_ms))
            low.append((t, "rage_click", {"x": 700, "y": 300, "target": "button.size-picker", "count": 3}))
        low.sort(key=lambda e: e[0])
        for t, name, props in low:
            self.ts = max(self.ts, t)
            page.event(self.ts, "low", name, props)
        if product is not None and rng.random() < p.cart_p:
            price = PRICES[category]
            self.cart.append(price)
            page.event(self.tick(500), "mid", "add_to_cart", {"sku": product, "price": price, "category": category})
        self.ts = max(self.ts, start + dwell_ms)
        page.event(self.tick(50), "mid", "page_leave",
                   {"engaged_ms": dwell_ms, "max_scroll_pct": depth, "low_dropped": 0})
        self.tick(rng.randrange(1000, 5000))


def _visit(person: _Person, start: int) -> Visit:
    v = _VisitBuilder(person, start)
    rng, p = v.rng, v.p
    landing_query, referrer = "", None
    if person.sessions == 1:
        first = rng.choice(p.referrers)
        if first is not None and first.startswith("?"):
            landing_query = first
        else:
            referrer = first
    if person.user_id is None and rng.random() < p.identify_p / 2:
        sign_in = v.page("/account" + landing_query, "Sign in", referrer)
        sign_in.event(v.ts, "mid", "page_view", {"navigation": "load"})
        v.identify(sign_in)
        v.browse(sign_in, None, None)
        landing_query, referrer = "", None
    cats, weights = zip(*p.categories.items())
    n_pages = rng.randint(*p.pages)
    if rng.random() < p.search_p:
        cat = rng.choices(cats, weights)[0]
        query = SEARCHES[cat]
        page = v.page(f"/search?q={query.replace(' ', '+')}" + landing_query.replace("?", "&"), "Search", referrer)
        page.event(v.ts, "mid", "page_view", {"navigation": "load"})
        page.event(v.tick(20), "mid", "search", {"query": query, "param": "q"})
        v.browse(page, None, None)
        landing_query, referrer = "", None
        n_pages -= 1
    for _ in range(max(1, n_pages)):
        cat = rng.choices(cats, weights)[0]
        sku = f"{cat}-{rng.randrange(1, 21):02d}"
        page = v.page(f"/{cat}/{sku}{landing_query}", f"{sku} | Outdoor shop", referrer)
        page.event(v.ts, "mid", "page_view", {"navigation": "load" if not v.events else "push"})
        page.event(v.tick(300), "mid", "product_view", {"category": cat, "sku": sku, "price": PRICES[cat]})
        v.browse(page, cat, sku)
        landing_query, referrer = "", None
    if v.cart and rng.random() < p.purchase_p:
        page = v.page("/checkout", "Checkout")
        page.event(v.ts, "mid", "page_view", {"navigation": "push"})
        if person.user_id is None and rng.random() < p.identify_p:
            v.identify(page)
        page.event(v.tick(rng.randrange(20_000, 60_000)), "mid", "purchase",
                   {"value": round(sum(v.cart), 2), "currency": "EUR", "items": len(v.cart)})
        page.event(v.tick(2_000), "mid", "page_leave", {"engaged_ms": 30_000, "max_scroll_pct": 100, "low_dropped": 0})
    return Visit(person.anonymous_id, p.name, person.user_id, v.events, v.ua, person.index, start)
