"""The personas of the visitor simulator: people of an outdoor-gear shop with known behaviour.

Every number here is a distribution parameter the simulator draws from, so tests can check that
the analyze stage finds back what was put in (segments recover personas, traits rank them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The shop's content categories (first URL path segment) and products per category.
CATEGORIES = ("tents", "boots", "jackets", "backpacks", "stoves", "sale")
PRICES = {"tents": 240.0, "boots": 130.0, "jackets": 180.0, "backpacks": 90.0, "stoves": 60.0, "sale": 35.0}
SEARCHES = {"tents": "2 person tent", "boots": "waterproof boots", "jackets": "rain jacket",
            "backpacks": "40l backpack", "stoves": "camping stove", "sale": "discount"}


@dataclass(frozen=True)
class Persona:
    name: str
    description: str
    visits_per_week: float  # mean of a Poisson draw per day (/7)
    hours: tuple[int, ...]  # UTC hours a visit starts at, drawn uniformly
    weekend_bias: float  # multiplier of the daily visit rate on Saturdays and Sundays
    pages: tuple[int, int]  # page views per visit, uniform in [lo, hi]
    dwell_secs: tuple[float, float]  # engaged seconds per page: lognormal (median, sigma)
    scroll: tuple[int, int]  # max scroll % per page, uniform in [lo, hi]
    clicks_per_page: float  # Poisson mean of clicks per page
    rage_click_p: float  # chance that a page has a rage click
    categories: dict[str, float]  # category -> weight of its pages
    mobile_p: float  # chance a visit is on a phone
    search_p: float  # chance a visit starts with a search
    cart_p: float  # chance a product page view adds to the cart
    purchase_p: float  # chance a visit with a cart ends in a purchase
    identify_p: float  # chance the person signs in (on their first visit with a purchase, or this often)
    referrers: tuple[str | None, ...] = field(default=(None,))  # first visit's referrer / landing UTM


PERSONAS: list[Persona] = [
    Persona(
        name="weekend_camper",
        description="plans trips at the weekend: tents, backpacks and stoves, reads carefully, buys big",
        visits_per_week=1.6, hours=(8, 9, 10, 11), weekend_bias=4.0, pages=(4, 8), dwell_secs=(45, 0.4),
        scroll=(55, 90), clicks_per_page=2.0, rage_click_p=0.0,
        categories={"tents": 5, "backpacks": 3, "stoves": 2, "sale": 0.2}, mobile_p=0.1, search_p=0.2,
        cart_p=0.25, purchase_p=0.6, identify_p=0.5,
        referrers=("https://www.google.com/search?q=tent", "https://www.google.com/"),
    ),
    Persona(
        name="bargain_hunter",
        description="evening phone sessions on the sale pages, quick looks, many cart adds, small orders",
        visits_per_week=5.0, hours=(19, 20, 21, 22), weekend_bias=1.0, pages=(5, 10), dwell_secs=(10, 0.4),
        scroll=(20, 50), clicks_per_page=4.0, rage_click_p=0.25,
        categories={"sale": 8, "boots": 1, "jackets": 1}, mobile_p=0.9, search_p=0.3,
        cart_p=0.6, purchase_p=0.25, identify_p=0.2,
        referrers=("?utm_source=newsletter&utm_medium=email&utm_campaign=deals",),
    ),
    Persona(
        name="loyal_regular",
        description="signed-in regular on weekday lunch breaks: boots and jackets, knows what to buy",
        visits_per_week=4.0, hours=(12, 13), weekend_bias=0.3, pages=(2, 4), dwell_secs=(25, 0.3),
        scroll=(40, 70), clicks_per_page=2.5, rage_click_p=0.0,
        categories={"boots": 4, "jackets": 4}, mobile_p=0.3, search_p=0.05,
        cart_p=0.5, purchase_p=0.8, identify_p=1.0,
        referrers=(None,),
    ),
    Persona(
        name="researcher",
        description="long reading sessions across every category, scrolls to the bottom, rarely buys",
        visits_per_week=2.5, hours=(14, 15, 16, 17), weekend_bias=1.0, pages=(8, 14), dwell_secs=(80, 0.3),
        scroll=(80, 100), clicks_per_page=1.0, rage_click_p=0.0,
        categories={"tents": 1, "boots": 1, "jackets": 1, "backpacks": 1, "stoves": 1},
        mobile_p=0.05, search_p=0.6, cart_p=0.03, purchase_p=0.2, identify_p=0.1,
        referrers=("https://outdoorforum.example/thread/42", "https://blog.example/gear-review"),
    ),
    Persona(
        name="window_shopper",
        description="rare night-time visits on a phone from social media, one page, little scrolling",
        visits_per_week=0.8, hours=(0, 1, 2, 23), weekend_bias=1.0, pages=(1, 2), dwell_secs=(6, 0.5),
        scroll=(5, 25), clicks_per_page=0.5, rage_click_p=0.05,
        categories={"jackets": 3, "tents": 1, "sale": 1}, mobile_p=0.95, search_p=0.0,
        cart_p=0.02, purchase_p=0.1, identify_p=0.0,
        referrers=("?utm_source=instagram&utm_medium=social&utm_campaign=autumn",),
    ),
]

BY_NAME = {p.name: p for p in PERSONAS}
