"""``jsonscan.set_aside`` against a plain walk, token by token, on random texts.

The real walk counts brackets in C a window at a time and jumps over deep values; the plain
walk below visits every bracket. Both must set aside the same bytes with the same notes,
whatever the window size (small windows put run and window boundaries everywhere).
"""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from beaconlake.ingest.collector import jsonscan

_PLAIN_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]|[\]}]|"', re.S)


def plain_set_aside(data: bytes, max_depth: int) -> tuple[bytes, list]:
    out: list[bytes] = []
    notes: list = []
    last, depth, deep_start = 0, 0, -1
    too_deep = ("too_deep", f"nested more than {max_depth} levels deep, limit {max_depth} (collector.max_json_depth)")

    def replace(start: int, end: int, note: tuple) -> None:
        nonlocal last
        out.append(data[last:start])
        out.append(jsonscan.MARKER_JSON + b'%d"' % len(notes))
        notes.append(note)
        last = end

    for m in _PLAIN_TOKEN.finditer(data):
        token = m.group()
        if token == b'"':
            return data, []
        if token[0] == 0x22:
            problem = jsonscan.string_problem(token) if deep_start < 0 else None
            if problem is not None:
                replace(m.start(), m.end(), ("invalid_string", problem))
        elif token in (b"[", b"{"):
            depth += 1
            if deep_start < 0 and depth > max_depth:
                deep_start = m.start()
        else:
            depth -= 1
            if deep_start >= 0 and depth == max_depth:
                replace(deep_start, m.end(), too_deep)
                deep_start = -1
    if deep_start >= 0:
        replace(deep_start, len(data), too_deep)
    if not notes:
        return data, []
    out.append(data[last:])
    return b"".join(out), notes


pieces = st.sampled_from([
    b"[", b"]", b"{", b"}", b"[[[", b"]]]", b"{{", b"}}", b"[{", b"}]", b",", b":", b"1", b" ", b"null",
    b'"a"', b'"[{"', b'"]}"', b'"\\"["', b'"\xff"', b'"\\ud800"', b'"\\ud83d\\ude00"', b'"\xed\xa0\x80"', b'"\x01"',
    b'"caf\xc3\xa9 ["', b'"\x7f"', b'"\\\\"', b"\\", b"\x80", b"\x01",  # valid non-ASCII, DEL, escaped backslash; stray bytes
])
texts = st.one_of(
    st.lists(pieces, max_size=60).map(b"".join),
    st.lists(pieces, max_size=60).map(lambda p: b"".join(p) + b'"never closed'),
)


@settings(max_examples=400, deadline=None)
@given(data=texts, max_depth=st.integers(1, 6), window=st.integers(1, 16))
def test_set_aside_matches_the_plain_walk(data, max_depth, window):
    saved = jsonscan.WINDOW_BYTES
    jsonscan.WINDOW_BYTES = window
    try:
        found = jsonscan.set_aside(data, max_depth)
    finally:
        jsonscan.WINDOW_BYTES = saved
    expected_data, expected_notes = plain_set_aside(data, max_depth)
    assert found.data == expected_data
    assert list(found.notes.values()) == expected_notes


@settings(max_examples=200, deadline=None)
@given(data=st.lists(pieces, max_size=60).map(b"".join))
def test_depth_of_counts_brackets_outside_strings(data):
    depth = deepest = 0
    for m in _PLAIN_TOKEN.finditer(data):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif m.group() in (b"]", b"}"):
            depth -= 1
    assert jsonscan.depth_of(data) == deepest


def test_the_walk_stops_after_max_notes():
    data = b"[" + b",".join([b'"\\ud800"'] * (jsonscan.MAX_NOTES + 1)) + b"]"
    found = jsonscan.set_aside(data, 10)
    assert found.overflow and found.data == data and not found.notes
    exactly = jsonscan.set_aside(b"[" + b",".join([b'"\\ud800"'] * jsonscan.MAX_NOTES) + b"]", 10)
    assert not exactly.overflow and len(exactly.notes) == jsonscan.MAX_NOTES
