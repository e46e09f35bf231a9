"""The door's slow path: find what is wrong inside a JSON text that msgspec refused, and where.

msgspec refuses a whole document for one bad string (invalid UTF-8, a lone surrogate, an invalid
escape, a raw control character) and raises RecursionError on deep nesting. A bad string or a
too-deep value must cost its own event, never its batch, so ``set_aside`` walks the text once and
replaces each bad string, and each value nested deeper than the limit, by a placeholder string
(``notes`` says what each one stood for). Everything else stays byte for byte and the structure
is untouched: what still does not parse is malformed for a reason of structure and is refused as
such. ``locate`` then names the field a placeholder sits in.

Only texts msgspec refused, or props that failed to decode, pay for this; the usual batch never
comes here.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import msgspec

# A string, or a quote that opens a string never closed; runs of brackets between strings.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|"', re.S)
_BRACKETS = re.compile(rb"[\[{]+|[\]}]+")
_CLOSERS = re.compile(rb"[\]}]+")
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]+|[\]}]+|"', re.S)
# Bad strings and deep values set aside one by one in a text, at most: a body with more is not a
# client's slip but a broken encoding or an attack, and each one costs microseconds.
MAX_NOTES = 1000
_ESCAPE = re.compile(rb"\\(u[0-9a-fA-F]{4}|.)", re.S)
_CONTROL = re.compile(rb"[\x00-\x1f]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_str_decoder = msgspec.json.Decoder(str)
_any_decoder = msgspec.json.Decoder()

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
    pos = 0
    try:
        for m in _STRING.finditer(data):
            walk.structure(pos, m.start())
            pos = m.end()
            if pos - m.start() == 1:  # a quote that opens a string never closed
                return SetAside(data)
            if walk.deep_start < 0:
                walk.string(m.start(), pos)
        walk.structure(pos, len(data))
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
        token = self.data[start:end]
        if token.isascii() and b"\\" not in token and _CONTROL.search(token) is None:
            return  # the usual string: nothing to set aside
        problem = string_problem(token)
        if problem is not None:
            self.replace(start, end, ("invalid_string", problem))

    def structure(self, start: int, end: int) -> None:
        """Follow the depth through text with no string in it (brackets, commas, scalars)."""
        data, count = self.data, self.data.count
        while start < end:
            if self.deep_start >= 0:  # only a closing bracket can end the value set aside
                closer = _CLOSERS.search(data, start, end)
                if closer is None:
                    self.depth += count(b"[", start, end) + count(b"{", start, end)
                    return
                self.depth += count(b"[", start, closer.start()) + count(b"{", start, closer.start())
                run = closer.end() - closer.start()
                if self.depth - run <= self.max_depth:
                    self.replace(self.deep_start, closer.start() + self.depth - self.max_depth, ("too_deep", self.too_deep))
                    self.deep_start = -1
                self.depth -= run
                start = closer.end()
                continue
            opens = count(b"[", start, end) + count(b"{", start, end)
            if self.depth + opens <= self.max_depth:  # cannot cross the limit in here
                self.depth += opens - count(b"]", start, end) - count(b"}", start, end)
                return
            run_m = _BRACKETS.search(data, start, end)
            run = run_m.end() - run_m.start()
            if data[run_m.start()] in b"[{":
                if self.depth + run > self.max_depth:
                    self.deep_start = run_m.start() + self.max_depth - self.depth
                self.depth += run
            else:
                self.depth -= run
            start = run_m.end()


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


def locate(value: Any, notes: Notes) -> tuple[str, tuple[str, str]] | None:
    """(path, (reason, what)) of the first placeholder in a decoded value: ``.props.a[2]``, or the path of
    its object followed by ``(a key)`` when a key was set aside."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            if node in notes:
                return path, notes[node]
        elif isinstance(node, dict):
            for key, child in reversed(node.items()):
                if key in notes:
                    return f"{path} (a key)", notes[key]
                stack.append((f"{path}{_member(key)}", child))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", child) for i, child in reversed(list(enumerate(node))))
    return None


def describe(data: bytes, notes: Notes) -> tuple[str, tuple[str, str]] | None:
    """(path, (reason, what)) of the first placeholder in a text; the path is empty when the text
    does not decode for another reason. None when the text holds no placeholder."""
    found = _MARKER_RE.search(data)
    if found is None:
        return None
    what = notes.get(MARKER_TEXT + found.group(1).decode(), ("invalid_string", "set aside"))
    try:
        value = _any_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return "", what
    return locate(value, notes) or ("", what)


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
