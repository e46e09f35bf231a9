"""PII scrubbing at the door: a tenant's ``[tenants.pii]`` rules applied to every accepted event
(and to the excerpts of rejected ones) before anything is written, the spool included.

What each rule does (all names case-insensitive for query parameters, exact for keys):

* ``drop_query_params`` / ``hash_query_params``: in ``url`` and ``referrer``, the query and the
  fragment (``#access_token=...``) are split on ``&``; a named parameter is removed, or its value
  replaced by a pseudonym. The other parameters keep their bytes.
* ``drop_props`` / ``hash_props``, ``drop_context`` / ``hash_context``: keys at any depth.
* ``redact_emails`` / ``redact_phones`` / ``redact_cards``: in ``url``, ``referrer``, ``title``, every
  string of ``props`` and the excerpts of rejections, the match becomes ``[email]``, ``[phone]``,
  ``[card]``. A card number is 13 to 19 digits (spaces or dashes between) that pass the Luhn check,
  so an order number is left alone, and that are not glued to letters, digits or dashes, so an
  id holding such digits (a uuid) is left alone too.

A pseudonym is ``h_`` and 16 hex digits of the keyed BLAKE2b hash of the value (``lake/privacy.py``):
the same value always gives the same pseudonym, so counts and joins still work, and without the
salt it cannot be checked against guesses.

Cost: an event whose texts hold nothing a rule looks for is not touched (its props are not even
decoded: a rule's key or an ``@`` or a long digit run must appear in their bytes first), and the
body is re-encoded only when something changed. Each change is counted by rule in
``beaconlake_pii_scrubbed_total``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

import msgspec

from beaconlake.ingest.collector.validate import Accepted, Checked
from beaconlake.privacy.settings import PiiSettings
from beaconlake.types import ClientEvent, Rejection

EMAIL = re.compile(r"[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")
# A card number stands as a word of its own: digits glued to letters or dashes are part of an
# id (the decimal groups of a uuid4, "12345678-1234-1234-…", are Luhn-valid one time in ten,
# and redacting them broke the matched_event_ids of high-level events).
CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
PHONE = re.compile(r"(?<![\w+])\+?\d(?:[ ().-]{0,2}\d){8,14}(?!\w)")
_NO_DIGITS = str.maketrans("", "", "0123456789")
# The quick look of a whole batch (``Scrubber._quick_verbatim``) finds where a card or phone
# number may be with two C-speed passes over the texts' bytes: every byte that may be part of a
# digit (an ASCII digit, or any byte of a non-ASCII character: ``\d`` matches every Unicode
# digit) becomes "1", and the separators ``CARD`` or ``PHONE`` allow between digits are deleted,
# so any match of theirs becomes a run of at least 13 (cards) or 9 (phones) "1"s.
_DIGITS_TO_ONES = bytes.maketrans(bytes(range(48, 58)) + bytes(range(128, 256)), b"1" * 138)
_SEPARATORS = {9: b" ().-", 13: b" -"}
_enc = msgspec.json.Encoder()


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class Scrubber:
    """One tenant's rules, compiled; ``hasher`` gives the keyed id hash (made on first use)."""

    def __init__(self, rules: PiiSettings, hasher: Callable[[], Callable[[str], str]]) -> None:
        self.rules = rules
        self._hasher = hasher
        self.drop_params = frozenset(p.lower() for p in rules.drop_query_params)
        self.hash_params = frozenset(p.lower() for p in rules.hash_query_params)
        self.drop_props, self.hash_props = frozenset(rules.drop_props), frozenset(rules.hash_props)
        self.drop_context, self.hash_context = frozenset(rules.drop_context), frozenset(rules.hash_context)
        self.prop_keys = [_enc.encode(k) for k in (*rules.drop_props, *rules.hash_props)]
        self.context_keys = [_enc.encode(k) for k in (*rules.drop_context, *rules.hash_context)]
        self.counts: Counter[str] = Counter()
        self.changes = 0  # every change, whatever its rule: "did anything change" without summing counts
        # a URL is split into parameters only when one of the named ones may be in it
        self.param_needles = [n + "=" for n in sorted(self.drop_params | self.hash_params)]
        # a card number has 13 digits at least, a phone number 9: a string with fewer holds neither
        self.min_digits = 9 if rules.redact_phones else 13 if rules.redact_cards else 0
        self.separators, self.run = _SEPARATORS.get(self.min_digits, b""), b"1" * self.min_digits
        self.body_keys = self.prop_keys + self.context_keys
        # Needles found in a joined, lower-cased text are found in its parts only if they are
        # printable ASCII (no separator, no context-dependent lower case); else event by event.
        self.plain_needles = all(n.isascii() and n.isprintable() for n in self.param_needles)

    def pseudonym(self, value: str) -> str:
        return "h_" + self._hasher()(value)[:16]

    # -- text ----------------------------------------------------------------------------------

    def text(self, value: str) -> str:
        """``value`` with e-mail addresses, card numbers and phone numbers redacted (as configured)."""
        r = self.rules
        if r.redact_emails and ("@" in value or "%40" in value):
            value, n = EMAIL.subn("[email]", value)
            self._count("email", n)
        if self.min_digits and len(value) - len(value.translate(_NO_DIGITS)) >= self.min_digits:
            if r.redact_cards:
                value = CARD.sub(self._card, value)
            if r.redact_phones:
                value = PHONE.sub(self._phone, value)
        return value

    def _count(self, rule: str, n: int = 1) -> None:
        if n:
            self.counts[rule] += n
            self.changes += n

    def _card(self, m: re.Match) -> str:
        """The run of digit groups with every card number in it redacted: a card number is a span
        of whole groups (``4111 1111 1111 1111`` after ``order 1``), 13 to 19 digits, Luhn-valid.
        Spans start and end at group edges, so a long id without separators is one span only."""
        text = m.group()
        groups = [(g.start(), g.end()) for g in re.finditer(r"\d+", text)]
        out, at, i = [], 0, 0
        while i < len(groups):
            for j in range(len(groups) - 1, i - 1, -1):
                digits = "".join(text[a:b] for a, b in groups[i:j + 1])
                if 13 <= len(digits) <= 19 and luhn(digits):
                    out.append(text[at:groups[i][0]] + "[card]")
                    at = groups[j][1]
                    self._count("card")
                    i = j
                    break
            i += 1
        return "".join(out) + text[at:]

    def _phone(self, m: re.Match) -> str:
        if 9 <= sum(c.isdigit() for c in m.group()) <= 15:
            self._count("phone")
            return "[phone]"
        return m.group()

    def url(self, url: str) -> str:
        lowered = url.lower()
        if any(n in lowered for n in self.param_needles):
            head, hashmark, fragment = url.partition("#")
            base, question, query = head.partition("?")
            if question:
                query = self._params(query)
            emptied = False
            if hashmark and "=" in fragment:
                fragment = self._params(fragment)
                emptied = not fragment  # every parameter of it went: no bare "#" left behind
            url = base + ("?" + query if query else "") + (hashmark + fragment if hashmark and not emptied else "")
        return self.text(url)

    def _params(self, query: str) -> str:
        kept = []
        for part in query.split("&"):
            raw_name, eq, value = part.partition("=")
            name = unquote_plus(raw_name).lower()
            if name in self.drop_params:
                self._count("query_param")
            elif name in self.hash_params and eq:
                self._count("query_param_hash")
                kept.append(f"{raw_name}={self.pseudonym(unquote_plus(value))}")
            else:
                kept.append(part)
        return "&".join(kept)

    # -- props and context -----------------------------------------------------------------------

    def _walk(self, value: Any, drop: frozenset[str], hashed: frozenset[str], texts: bool, rule: str) -> Any:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if k in drop:
                    self._count(f"{rule}_drop")
                elif k in hashed:
                    self._count(f"{rule}_hash")
                    out[k] = self.pseudonym(v if isinstance(v, str) else _enc.encode(v).decode())
                else:
                    out[k] = self._walk(v, drop, hashed, texts, rule)
            return out
        if isinstance(value, list):
            return [self._walk(v, drop, hashed, texts, rule) for v in value]
        if texts and isinstance(value, str):
            return self.text(value)
        return value

    def _json(self, raw: msgspec.Raw, keys: list[bytes], drop, hashed, texts: bool, rule: str) -> msgspec.Raw:
        data = bytes(raw)
        if data == b"null":
            return raw
        r = self.rules
        # a key can be spelled with JSON escapes ("em\u0061il"): no needle finds it, the decode does
        wanted = (keys and (b"\\u" in data or any(k in data for k in keys))) or (texts and (
            (r.redact_emails and (b"@" in data or b"%40" in data or b"\\u" in data))
            or (self.min_digits and len(data) - len(data.translate(None, b"0123456789")) >= self.min_digits)))
        if not wanted:
            return raw
        before = self.changes
        doc = self._walk(msgspec.json.decode(data), drop, hashed, texts, rule)
        return msgspec.Raw(_enc.encode(doc)) if self.changes != before else raw

    def event(self, ev: ClientEvent) -> ClientEvent:
        """``ev``, or a scrubbed copy of it when a rule changed something."""
        before = self.changes
        url = self.url(ev.url) if ev.url else ev.url
        referrer = self.url(ev.referrer) if ev.referrer else ev.referrer
        title = self.text(ev.title) if ev.title else ev.title
        props = self._json(ev.props, self.prop_keys, self.drop_props, self.hash_props, True, "prop")
        context = self._json(ev.context, self.context_keys, self.drop_context, self.hash_context, False, "context")
        if self.changes == before:
            return ev
        return msgspec.structs.replace(ev, url=url, referrer=referrer, title=title, props=props, context=context)

    def may_hold(self, body: bytes) -> bool:
        """Whether the e-mail rule can match anything in ``body``: a C-speed look at the request's
        bytes. A body with JSON escapes (``\\u0040`` is an ``@``) is always looked at event by event."""
        # each first looks for one byte (memchr, a tenth of the cost of a longer needle)
        return (b"\\" in body and b"\\u" in body) or (self.rules.redact_emails and (
            b"@" in body or (b"%" in body and b"%40" in body)))

    def _quick(self, checked: Checked) -> bool:
        """Whether any other rule may match a string of the batch: a named query parameter in a
        URL, a named key in props or context, enough digits for a card or phone number (counted
        with ``translate``, at C speed: the usual event has a few). Looks at the decoded events,
        not the body, whose timestamps are digit runs as long as a card number."""
        needed = self.min_digits
        for ev in checked.accepted:
            for url in (ev.url, ev.referrer):
                if url and self.param_needles and ("?" in url or "#" in url):
                    lowered = url.lower()
                    if any(n in lowered for n in self.param_needles):
                        return True
            if needed:
                for text in (ev.url, ev.title, ev.referrer):
                    if text and len(text) - len(text.translate(_NO_DIGITS)) >= needed:
                        return True
            props = bytes(ev.props)
            if needed and len(props) - len(props.translate(None, b"0123456789")) >= needed:
                return True
            if self.prop_keys and any(k in props for k in self.prop_keys):
                return True
            if self.context_keys and any(k in bytes(ev.context) for k in self.context_keys):
                return True
        return bool(checked.rejected)

    def _quick_verbatim(self, checked: Checked, body: bytes) -> bool:
        """``_quick`` for a batch whose events were decoded from ``body`` itself (the native
        door's usual batch): the same answer when it is False, in a few C-speed looks at the
        body and at the batch's texts joined, instead of a few per event. Sound because every
        props and context is a slice of ``body``; the texts are joined with NUL, which is in no
        needle and is neither a digit nor a separator. True sends the batch to ``_quick``."""
        if checked.rejected or (self.body_keys and any(k in body for k in self.body_keys)):
            return True
        needed, needles = self.min_digits, self.param_needles
        if not needed and not needles:
            return False
        accepted = checked.accepted
        texts = "\x00".join([t for ev in accepted for t in (ev.url, ev.referrer, ev.title) if t])
        if needles and "=" in texts:  # every needle ends with "="
            if not self.plain_needles:
                return self._quick(checked)
            lowered = texts.lower()
            for needle in needles:  # a loop, not any(): no generator to make for a dozen needles
                if needle in lowered:
                    return True
        if needed:
            probe = b"\x00".join([texts.encode("utf-8", "surrogatepass"), *[ev.props for ev in accepted]])
            if self.run in probe.translate(_DIGITS_TO_ONES, self.separators):
                return True
        return False

    def batch(self, checked: Checked, body: bytes, verbatim: bool = False) -> Checked:
        """The batch with every accepted event and rejection excerpt scrubbed; the same object
        when nothing matched (its body, as received, then goes to the spool as it is).
        ``body``: the request body, for the quick look of ``may_hold``; ``verbatim``: the
        events were decoded from ``body`` itself, unchanged (the quick look is then cheaper)."""
        if not self.may_hold(body) and not (self._quick_verbatim(checked, body) if verbatim else self._quick(checked)):
            return checked
        before = self.changes
        event = self.event
        accepted = [event(ev) for ev in checked.accepted]
        rejected = [Rejection(r.index, r.reason, r.error, self.text(r.excerpt)) for r in checked.rejected]
        if self.changes == before:
            return checked
        body = _enc.encode(Accepted([msgspec.Raw(_enc.encode(ev)) for ev in accepted])) if accepted else b""
        return Checked(accepted, rejected, body)

    def take_counts(self) -> Counter[str]:
        counts, self.counts = self.counts, Counter()
        return counts


def scrubbers(tenants, hasher: Callable[[], Callable[[str], str]]) -> dict[str, Scrubber]:
    """A scrubber per tenant id, for the tenants whose ``pii.enabled`` is on."""
    return {t.id: Scrubber(t.pii, hasher) for t in tenants if t.pii.enabled}
