"""Strings the tracker cuts or copies from the page arrive as valid Unicode.

The tracker cuts titles, link texts, search terms and more to a number of UTF-16 units. Cut in
the middle of a surrogate pair, half an emoji is left: a lone surrogate, which JSON can carry
as an escape but no UTF-8 decoder accepts, so the collector refused the whole request, and
with it every other event of the batch (an `add_to_cart` was lost that way).
"""

from __future__ import annotations

import urllib.parse

from tracker_support import names, wait_for_events

EMOJI = "\U0001f600"  # two UTF-16 units: a surrogate pair


def _link(tab, text: str, href: str) -> None:
    tab.evaluate("""([text, href]) => {
        const a = document.createElement('a');
        a.id = 'made'; a.href = href; a.textContent = text;
        document.querySelector('main').prepend(a);
    }""", [text, href])
    tab.click("#made")
    tab.evaluate("() => document.getElementById('made').remove()")


def test_cuts_never_split_an_emoji_and_the_rest_of_the_batch_arrives(tab, site, collector):
    site.use(collector, flush_ms=60000)  # one batch, sent by hand below
    # the search term: 255 units, then an emoji over the 256-unit cut
    tab.goto(site.url("index.html?q=" + urllib.parse.quote("s" * 255 + EMOJI)))
    tab.wait_loaded()
    tab.wait_configured()
    aid = tab.ids()["anonymous_id"]
    # an emoji that fits just before each cut, then one over it
    tab.evaluate("t => { document.title = t; }", "a" * 2046 + EMOJI + "more")
    _link(tab, "b" * 62 + EMOJI + "more", "#fits")
    tab.evaluate("t => { document.title = t; }", "a" * 2047 + EMOJI)
    _link(tab, "c" * 63 + EMOJI, "#over")
    # a class name with an emoji over the 256-unit cut of a CSS path (html>body>main>h1.ddd...)
    tab.evaluate("c => { document.querySelector('h1').className = c; }", "d" * 237 + EMOJI)
    tab.click("h1")
    tab.evaluate("() => beaconlake.track('add_to_cart', {sku: 'B', price: 42})")
    tab.evaluate("() => beaconlake.flush()")

    rows = wait_for_events(collector, lambda rs: "add_to_cart" in names(rs), anonymous_id=aid)
    links = {r["props"]["href"].rsplit("#", 1)[1]: r for r in rows if r["name"] == "link_click"}
    assert links["fits"]["title"] == "a" * 2046 + EMOJI  # complete, at the limit
    assert links["fits"]["props"]["text"] == "b" * 62 + EMOJI
    assert links["over"]["title"] == "a" * 2047  # cut before the emoji, not through it
    assert links["over"]["props"]["text"] == "c" * 63
    search = next(r for r in rows if r["name"] == "search")
    assert search["props"]["query"] == "s" * 255
    h1 = next(r for r in rows if r["name"] == "click" and ">h1." in r["props"]["target"])
    assert h1["props"]["target"] == "html>body>main>h1." + "d" * 237  # 256 units would split the emoji
    assert next(r for r in rows if r["name"] == "add_to_cart")["props"] == {"sku": "B", "price": 42}
    assert not tab.errors


def test_a_lone_surrogate_from_the_page_goes_as_a_replacement_character(tab, site, collector):
    site.use(collector, flush_ms=60000)
    tab.goto(site.url("index.html"))
    tab.wait_loaded()
    tab.wait_configured()
    aid = tab.ids()["anonymous_id"]
    # half an emoji made by the page itself, in the title, in props (value and key), in a
    # user id; and a literal backslash-u text, which is no surrogate and must stay as it is
    tab.evaluate(r"""() => {
        document.title = 'half \ud83d of it';
        beaconlake.identify('user-\ude00');
        beaconlake.track('note', {text: 'x\ud83dy', '\udc00key': 1, literal: '\\ud83d', pair: '\ud83d\ude00'});
        beaconlake.track('add_to_cart', {sku: 'B', price: 42});
        beaconlake.flush();
    }""")
    rows = wait_for_events(collector, lambda rs: "add_to_cart" in names(rs), anonymous_id=aid)
    note = next(r for r in rows if r["name"] == "note")
    assert note["props"] == {"text": "x\ufffdy", "\ufffdkey": 1, "literal": "\\ud83d", "pair": EMOJI}
    assert note["title"] == "half \ufffd of it"
    assert note["user_id"] == "user-\ufffd"
    assert not tab.errors
