"""The demo's sample shop: home, category, product, search, cart and checkout pages, each
embedding ``beaconlake.js`` from the collector, served from their own origin like a real site.

Pages are made from one template; the catalogue is the simulator's (same categories, products
and prices) so real browser visitors and simulated ones land on the same URLs.
"""

from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve().parent / "site"
PRODUCTS_PER_CATEGORY = 20

try:
    from beaconlake.simulate import CATEGORIES
    from beaconlake.simulate.personas import PRICES
except ImportError:  # the simulator is optional for the site itself
    CATEGORIES = ("tents", "boots", "jackets", "backpacks", "stoves", "sale")
    PRICES = {"tents": 240.0, "boots": 130.0, "jackets": 180.0, "backpacks": 90.0, "stoves": 60.0, "sale": 35.0}


def _products(cat: str) -> str:
    return "".join(
        f'<li class="product"><a href="/{cat}/{cat}-{i:02d}">{cat}-{i:02d}</a> <span>€{PRICES[cat]:.2f}</span></li>'
        for i in range(1, PRODUCTS_PER_CATEGORY + 1)
    )


def page(path: str, query: str) -> tuple[int, str, str, str] | None:
    """(status, title, body html, page data attributes) of a shop URL, or None when unknown."""
    parts = [p for p in path.split("/") if p]
    nav = "".join(f'<a href="/{c}/">{c}</a>' for c in CATEGORIES)
    if not parts:
        cats = "".join(f'<li><a class="category" href="/{c}/">{c.title()}</a></li>' for c in CATEGORIES)
        return 200, "Outdoor shop", f"<h1>Outdoor shop</h1><p>Gear for every trip.</p><ul class='cats'>{cats}</ul>", nav, ""
    if parts == ["search"]:
        q = parse_qs(query).get("q", [""])[0]
        hits = [c for c in CATEGORIES if q and (c in q.lower() or q.lower() in c)] or list(CATEGORIES[:2])
        items = "".join(f"<h2>{c}</h2><ul>{_products(c)[:600]}</ul>" for c in hits)
        return 200, "Search", f"<h1>Search: {html.escape(q)}</h1>{items}", nav, ""
    if parts == ["cart"]:
        return 200, "Cart", '<h1>Your cart</h1><ul id="cart"></ul><a id="to-checkout" class="button" href="/checkout">Checkout</a>', nav, ""
    if parts == ["checkout"]:
        return 200, "Checkout", ('<h1>Checkout</h1><form id="checkout"><input name="email" placeholder="email" value="demo@example.com">'
                                 '<button id="pay" type="submit">Pay</button></form><p id="thanks" hidden>Thank you for your order!</p>'), nav, ""
    if parts == ["account"]:
        return 200, "Sign in", '<h1>Sign in</h1><form id="signin"><input name="user" value="demo-user"><button type="submit">Sign in</button></form>', nav, ""
    if len(parts) == 1 and parts[0] in CATEGORIES:
        cat = parts[0]
        return 200, f"{cat.title()} | Outdoor shop", f"<h1>{cat.title()}</h1><ul class='products'>{_products(cat)}</ul>", nav, ""
    if len(parts) == 2 and parts[0] in CATEGORIES and parts[1].startswith(parts[0] + "-"):
        cat, sku = parts
        attrs = f' data-category="{cat}" data-sku="{html.escape(sku)}" data-price="{PRICES[cat]}"'
        body = (f"<h1>{html.escape(sku)}</h1><p class='price'>€{PRICES[cat]:.2f}</p>"
                f"<p>A fine piece of {cat} kit, tested on real trips.</p>"
                f"<button id='add-to-cart'>Add to cart</button> <a href='/cart'>Go to cart</a>"
                "<div style='height:1600px'></div><p>Reviews: ★★★★☆</p>")
        return 200, f"{sku} | Outdoor shop", body, nav, attrs
    return None


class _Handler(BaseHTTPRequestHandler):
    collector_url = ""
    write_key = ""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path in ("/shop.js", "/shop.css"):
            data = (HERE / url.path[1:]).read_bytes()
            ctype = "application/javascript" if url.path.endswith(".js") else "text/css"
            return self._send(200, data, ctype)
        found = page(url.path, url.query)
        if found is None:
            return self._send(404, b"<h1>Not found</h1>", "text/html; charset=utf-8")
        status, title, body, nav, attrs = found
        text = (HERE / "layout.html").read_text().format(
            title=html.escape(title), body=body, nav=nav, attrs=attrs,
            collector=html.escape(self.collector_url), key=html.escape(self.write_key))
        self._send(status, text.encode(), "text/html; charset=utf-8")

    def _send(self, status: int, data: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass  # the collector's logs are the interesting ones


class ShopSite:
    def __init__(self, host: str, port: int, collector_url: str, write_key: str) -> None:
        handler = type("Handler", (_Handler,), {"collector_url": collector_url, "write_key": write_key})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="demo-shop", daemon=True)

    def start(self) -> ShopSite:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
