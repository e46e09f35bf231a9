"""The door's slow path: find what is wrong inside a JSON text that msgspec refused, and where.

msgspec refuses a whole document for one bad string (invalid UTF-8, a lone surrogate, an invalid
escape, a raw control character) and raises RecursionError on deep nesting. A bad string or a
too-deep value must cost its own event, never its batch, so ``set_aside`` walks the text once and
replaces each bad string, and each value nested deeper than the limit, by a placeholder string
(``notes`` says what each one stood for). Everything else stays byte for byte and the structure
is untouched: what still does not parse is malformed for a reason of structure and is refused as
such. ``describe`` then names the field a placeholder sits in.

Only texts msgspec refused, or props that failed to decode, pay for this; the usual batch never
comes here.
"""

from __future__ import annotations

import re
import secrets
from array import array
from itertools import accumulate
from dataclasses import dataclass, field

import msgspec

# A bracket, or a byte that a plain ASCII string cannot hold: what the walk stops at.
_SUSPECT = re.compile(rb"[\[\]{}\\\x00-\x1f\x80-\xff]")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKETS = re.compile(rb"[\[{]+|[\]}]+")
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]+|[\]}]+|"', re.S)
# Brackets as steps of depth (+1, -1 as signed bytes), everything else deleted.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# Bad strings and deep values set aside one by one in a text, at most: a body with more is not a
# client's slip but a broken encoding or an attack, and each one costs microseconds.
MAX_NOTES = 1000
WINDOW_BYTES = 4096  # structure is followed this many bytes at a time
_ESCAPE = re.compile(rb"\\(u[0-9a-fA-F]{4}|.)", re.S)
_CONTROL = re.compile(rb"[\x00-\x1f]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_str_decoder = msgspec.json.Decoder(str)
_raw_object = msgspec.json.Decoder(dict[str, msgspec.Raw])
_raw_array = msgspec.json.Decoder(list[msgspec.Raw])

# Placeholders start with NUL and a per-process nonce: no client can aim at them.
_NONCE = secrets.token_hex(4)
MARKER_TEXT = f"\x00beaconlake-{_NONCE}-"
MARKER_JSON = f'"\\u0000beaconlake-{_NONCE}-'.encode()
_MARKER_RE = re.compile(re.escape(MARKER_JSON) + rb'([0-9]+)"')
REPLACEMENT_JSON = b'"\xef\xbf\xbd"'  # U+FFFD, how an excerpt shows what was set aside


@dataclass(slots=True)
class SetAside:
    data: bytes  # the text with every bad string and too-deep value replaced
    # placeholder value -> (reason, what it replaced): ("invalid_string" | "too_deep", "lone surrogate …")
    notes: dict[str, tuple[str, str]] = field(default_factory=dict)
    overflow: bool = False  # more than MAX_NOTES to set aside: the walk stopped there


Notes = dict[str, tuple[str, str]]


def set_aside(data: bytes, max_depth: int, levels_above: int = 0) -> SetAside:
    """Replace bad strings and values nested deeper than ``max_depth`` (the outermost value is
    depth 1; the message counts from ``levels_above`` levels down, where the field starts).
    Returns the text unchanged, with no notes, when it has nothing to set aside or when a string
    is never closed (a structural fault that must stay visible); with ``overflow`` set when there
    are more than ``MAX_NOTES``."""
    limit = max_depth - levels_above
    walk = _Walk(data, max_depth, f"nested more than {limit} levels deep, limit {limit} (collector.max_json_depth)")
    pos, end = 0, len(data)
    try:
        while pos < end:
            # Up to the next bracket or byte a plain ASCII string cannot hold, there are only
            # plain strings and scalars: an even number of quotes before it means it is outside
            # any string, an odd number that it is inside the string opened by the last one.
            hit = _SUSPECT.search(data, pos)
            at = end if hit is None else hit.start()
            if data.count(b'"', pos, at) % 2:
                opened = data.rfind(b'"', pos, at)
                string = _STRING.match(data, opened)
                if string is None:  # never closed
                    return SetAside(data)
                if walk.deep_start < 0:
                    walk.string(opened, string.end())
                pos = string.end()
            elif hit is None:
                break
            elif data[at] in b"[]{}":  # brackets: follow them up to the next string
                quote = data.find(b'"', at)
                stop = end if quote < 0 else quote
                walk.structure(at, stop)
                pos = stop
            else:  # such a byte outside any string is not JSON: the parser will say so
                pos = at + 1
        if walk.deep_start >= 0:  # never closed: set aside to the end, the parser says what is missing
            walk.replace(walk.deep_start, len(data), ("too_deep", walk.too_deep))
    except _Overflow:
        return SetAside(data, overflow=True)
    if not walk.notes:
        return SetAside(data)
    walk.out.append(data[walk.last :])
    return SetAside(b"".join(walk.out), walk.notes)


class _Overflow(Exception):
    pass


class _Walk:
    """The state of one ``set_aside`` pass. Its cost stays close to linear on hostile texts:
    structure between strings is counted in C (``bytes.count``) unless the depth limit may be
    crossed in it, a value set aside for its depth is skipped to its closing bracket in one
    search, and the walk stops after ``MAX_NOTES`` placeholders."""

    def __init__(self, data: bytes, max_depth: int, too_deep: str) -> None:
        self.data, self.max_depth, self.too_deep = data, max_depth, too_deep
        self.depth = 0
        self.deep_start = -1  # where the value being set aside for its depth starts, -1 when none
        self.out: list[bytes] = []
        self.last = 0  # where the text not yet copied to ``out`` starts
        self.notes: Notes = {}

    def replace(self, start: int, end: int, note: tuple[str, str]) -> None:
        n = len(self.notes)
        if n == MAX_NOTES:
            raise _Overflow
        self.out.append(self.data[self.last : start])
        self.out.append(MARKER_JSON + b'%d"' % n)
        self.notes[f"{MARKER_TEXT}{n}"] = note
        self.last = end

    def string(self, start: int, end: int) -> None:
        problem = string_problem(self.data[start:end])
        if problem is not None:
            self.replace(start, end, ("invalid_string", problem))

    def structure(self, start: int, end: int) -> None:
        """Follow the depth through text with no string in it (brackets, commas, scalars).

        A window at a time, in C: bracket counts when they show that the limit is not crossed
        (or, inside a value set aside, that it does not close), else the exact running depth;
        Python goes bracket by bracket only in the window where a value crosses the limit or
        closes, once per value. So the walk stays linear in the text, at C speed."""
        data, count = self.data, self.data.count
        while start < end:
            stop = min(end, start + WINDOW_BYTES)
            opens = count(b"[", start, stop) + count(b"{", start, stop)
            closes = count(b"]", start, stop) + count(b"}", start, stop)
            deep = self.deep_start >= 0
            if (self.depth - closes > self.max_depth) if deep else (self.depth + opens <= self.max_depth):
                self.depth += opens - closes
                start = stop
                continue
            steps = array("b", data[start:stop].translate(_STEPS, _NOT_BRACKETS))
            running = accumulate(steps, initial=self.depth)
            if (min(running) > self.max_depth) if deep else (max(running) <= self.max_depth):
                self.depth += opens - closes
                start = stop
                continue
            start = self._cross(start, stop)

    def _cross(self, start: int, stop: int) -> int:
        """Bracket by bracket up to where a value crosses the limit or, set aside, closes;
        returns where to go on from."""
        data = self.data
        for m in _BRACKETS.finditer(data, start, stop):
            run = m.end() - m.start()
            if data[m.start()] in b"[{":
                if self.deep_start < 0 and self.depth + run > self.max_depth:
                    self.deep_start = m.start() + self.max_depth - self.depth
                    self.depth += run
                    return m.end()
                self.depth += run
            else:
                if self.deep_start >= 0 and self.depth - run <= self.max_depth:
                    self.replace(self.deep_start, m.start() + self.depth - self.max_depth, ("too_deep", self.too_deep))
                    self.deep_start = -1
                    self.depth -= run
                    return m.end()
                self.depth -= run
        return stop


def string_problem(token: bytes) -> str | None:
    """What is wrong with one JSON string token (quotes included), or None if nothing is."""
    try:
        _str_decoder.decode(token)
        return None
    except msgspec.DecodeError as exc:
        refused = str(exc)
    inner = token[1:-1]
    try:
        inner.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = inner[exc.start : exc.start + 3]
        if len(raw) == 3 and raw[0] == 0xED and 0xA0 <= raw[1] <= 0xBF and 0x80 <= raw[2] <= 0xBF:
            point = 0xD000 | (raw[1] & 0x3F) << 6 | raw[2] & 0x3F
            return f"lone surrogate U+{point:04X} written as UTF-8 bytes {raw.hex(' ')} (invalid UTF-8) at byte {exc.start}"
        return f"invalid UTF-8: byte 0x{inner[exc.start]:02x} at byte {exc.start}"
    high = -1  # position of a high surrogate escape waiting for its low half
    for m in _ESCAPE.finditer(inner):
        esc = m.group(1)
        unit = int(esc[1:], 16) if len(esc) == 5 else -1
        if high >= 0:
            if m.start() == high + 6 and 0xDC00 <= unit <= 0xDFFF:
                high = -1
                continue
            break
        if 0xD800 <= unit <= 0xDBFF:
            high = m.start()
        elif 0xDC00 <= unit <= 0xDFFF:
            return f"lone surrogate {_show(inner, m.start())} at byte {m.start()}: a low surrogate needs a high one right before it"
        elif unit < 0 and esc not in b'"\\/bfnrt':
            return f"invalid escape {_show(inner, m.start(), 2)} at byte {m.start()}"
    if high >= 0:
        return f"lone surrogate {_show(inner, high)} at byte {high}: a high surrogate needs a low one right after it"
    control = _CONTROL.search(inner)
    if control is not None:
        return f"control character U+{inner[control.start()]:04X} not escaped, at byte {control.start()}"
    return refused


def _show(inner: bytes, at: int, size: int = 6) -> str:
    return inner[at : at + size].decode("ascii", errors="backslashreplace")


def describe(data: bytes, notes: Notes) -> tuple[str, tuple[str, str]] | None:
    """(path, (reason, what)) of the first placeholder in a text: ``.props.a[2]``, or the path
    of its object followed by `` (a key)`` when a key was set aside. The path is found by
    descending only into the value that holds the placeholder, each level read with its
    members left raw, so a big text costs a few skims, not a full decode. None when the text
    holds no placeholder."""
    found = _MARKER_RE.search(data)
    if found is None:
        return None
    marker = found.group(0)
    text = MARKER_TEXT + found.group(1).decode()
    what = notes.get(text, ("invalid_string", "set aside"))
    path, node = "", data
    try:
        while True:
            node = node.strip()
            if node[:1] == b"{":
                members = _raw_object.decode(node)
                if text in members:
                    return f"{path} (a key)", what
                key = next((k for k, v in members.items() if marker in bytes(v)), None)
                if key is None:  # behind a duplicate key that won
                    return path, what
                path, node = path + _member(key), bytes(members[key])
            elif node[:1] == b"[":
                items = _raw_array.decode(node)
                index = next((i for i, v in enumerate(items) if marker in bytes(v)), None)
                if index is None:
                    return path, what
                path, node = f"{path}[{index}]", bytes(items[index])
            else:
                return path, what
    except (msgspec.DecodeError, RecursionError):
        return path, what


def depth_of(data: bytes) -> int:
    """How deeply a JSON text nests (``{}`` is 1, ``1`` is 0); brackets in strings do not count."""
    depth = deepest = 0
    for m in _TOKEN.finditer(data):
        first = data[m.start()]
        if first in (0x5B, 0x7B):
            depth += m.end() - m.start()
            deepest = max(deepest, depth)
        elif first != 0x22:
            depth -= m.end() - m.start()
    return deepest


def shown(data: bytes) -> bytes:
    """The text as an excerpt shows it: each placeholder as U+FFFD."""
    return _MARKER_RE.sub(REPLACEMENT_JSON, data) if MARKER_JSON in data else data


def _member(key: str) -> str:
    if _IDENT.fullmatch(key):
        return f".{key}"
    return f"[{msgspec.json.encode(key).decode()}]"
