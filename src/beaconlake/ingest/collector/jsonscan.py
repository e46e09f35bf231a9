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

# A string, a run of openers, a run of closers, or a quote that opens a string never closed.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]+|[\]}]+|"', re.S)
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


Notes = dict[str, tuple[str, str]]


def set_aside(data: bytes, max_depth: int, levels_above: int = 0) -> SetAside:
    """Replace bad strings and values nested deeper than ``max_depth`` (the outermost value is
    depth 1; the message counts from ``levels_above`` levels down, where the field starts).
    Returns the text unchanged, with no notes, when it has nothing to set aside or when a string
    is never closed (a structural fault that must stay visible)."""
    out: list[bytes] = []
    notes: Notes = {}
    last = depth = 0
    deep_start = -1  # where the value being set aside for its depth starts, -1 when none
    too_deep = f"nested more than {max_depth - levels_above} levels deep, limit {max_depth - levels_above} (collector.max_json_depth)"

    def replace(start: int, end: int, reason: str, what: str) -> None:
        nonlocal last
        n = len(notes)
        out.append(data[last:start])
        out.append(MARKER_JSON + b'%d"' % n)
        notes[f"{MARKER_TEXT}{n}"] = (reason, what)
        last = end

    for m in _TOKEN.finditer(data):
        first = data[m.start()]
        if first == 0x22:  # '"'
            if m.end() - m.start() == 1:
                return SetAside(data)
            if deep_start < 0:
                problem = string_problem(m.group())
                if problem is not None:
                    replace(m.start(), m.end(), "invalid_string", problem)
        elif first in (0x5B, 0x7B):  # '[', '{'
            run = m.end() - m.start()
            if deep_start < 0 and depth + run > max_depth:
                deep_start = m.start() + (max_depth - depth)
            depth += run
        else:
            run = m.end() - m.start()
            if deep_start >= 0 and depth - run <= max_depth:
                closes_at = m.start() + (depth - max_depth)
                replace(deep_start, closes_at, "too_deep", too_deep)
                deep_start = -1
            depth -= run
    if deep_start >= 0:  # never closed: set aside to the end, the parser says what is missing
        replace(deep_start, len(data), "too_deep", too_deep)
    if not notes:
        return SetAside(data)
    out.append(data[last:])
    return SetAside(b"".join(out), notes)


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
    what = notes.get(f"{MARKER_TEXT}{int(found.group(1))}", ("invalid_string", "set aside"))
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
