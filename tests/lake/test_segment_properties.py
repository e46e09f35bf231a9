"""Properties of the segment format, for arbitrary payloads and arbitrary damage.

For any payload sequence written as a segment and then damaged (bytes flipped, garbage
inserted, the file cut short), reading:
  * never raises (what is wrong is in the result);
  * never yields a frame that was not written, and yields them in the written order;
  * yields every frame the damage did not touch;
  * reports the rest: a frame that is not yielded lies in a reported range, or is counted
    missing by the trailer, or the segment is reported without its trailer.
"""

import asyncio
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beaconlake.config import SpoolSettings
from beaconlake.ingest import spool
from beaconlake.lake import segment

SALT = b"\x01\x02\x03\x04\x05\x06\x07\x08"
SEED = segment.seed_of(SALT)
# What a client can put in a request body: well-formed frames, but keyed by a salt of its own
# choosing. A segment's salt is random and never leaves the spool, so a client cannot match it.
CLIENT_SEED = segment.seed_of(b"clientsa")

# Payloads that look like the format's own bytes too: the sync marker, whole frames.
payloads = st.lists(
    st.one_of(
        st.binary(max_size=120),
        st.builds(lambda a, b: a + segment.SYNC + b, st.binary(max_size=30), st.binary(max_size=30)),
        st.builds(lambda p: segment.frame(CLIENT_SEED, p), st.binary(max_size=30)),  # a frame inside a frame
    ),
    max_size=25,
)
ending = st.sampled_from(["clean", "recovered", "open"])
damage = st.fixed_dictionaries({
    "flips": st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=4),
    "inserts": st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=40)), max_size=3),
    "cut": st.one_of(st.none(), st.integers(0, 10**6)),
})


def build(items: list[bytes], end: str) -> tuple[bytes, list[tuple[int, int]]]:
    data = bytearray(segment.header(SALT))
    spans = []
    for p in items:
        start = len(data)
        data += segment.frame(SEED, p)
        spans.append((start, len(data)))
    if end != "open":
        kind = segment.CLEAN if end == "clean" else segment.RECOVERED
        data += segment.trailer(SEED, kind, len(items) if end == "clean" else 0, len(data))
    return bytes(data), spans


def apply(data: bytes, spans: list[tuple[int, int]], dmg: dict) -> tuple[bytes, set[int]]:
    """The damaged bytes, and which frames (by index) the damage touched. Positions are in the
    original file's coordinates."""
    size = len(data)
    flips = {pos % size: mask for pos, mask in dmg["flips"]}
    inserts = {pos % (size + 1): garbage for pos, garbage in dmg["inserts"]}
    cut = None if dmg["cut"] is None else dmg["cut"] % (size + 1)
    out = bytearray()
    for i in range(size + 1):
        if i in inserts:
            out += inserts[i]
        if i == size or (cut is not None and i >= cut):
            break
        out.append(data[i] ^ flips.get(i, 0))
    header_hit = any(p < segment.HEADER.size for p in flips) or any(p < segment.HEADER.size for p in inserts) or (
        cut is not None and cut < segment.HEADER.size)
    touched = set()
    for n, (start, end) in enumerate(spans):
        if header_hit or any(start <= p < end for p in flips) or any(start < p < end for p in inserts) or (
                cut is not None and cut < end):
            touched.add(n)
    return bytes(out), touched


def is_subsequence(short: list[bytes], long: list[bytes]) -> bool:
    it = iter(long)
    return all(any(x == y for y in it) for x in short)


@settings(max_examples=400, deadline=None)
@given(payloads, ending, damage)
def test_reading_damaged_segments(items, end, dmg):
    data, spans = build(items, end)
    damaged, touched = apply(data, spans, dmg)
    scan = segment.scan(damaged)  # never raises

    assert is_subsequence(scan.frames, items), "yielded a frame that was not written, or out of order"
    untouched = [p for n, p in enumerate(items) if n not in touched]
    assert is_subsequence(untouched, scan.frames), "lost a frame the damage did not touch"

    lost = len(items) - len(scan.frames)
    if lost:
        assert scan.unreadable or scan.torn_tail or scan.sealed is None or scan.version is None, scan
    if not touched and damaged == data:
        assert scan.frames == items
        assert scan.corrupt == (end == "open")  # a segment in sealed/ without its trailer is not whole
    for start, stop in scan.unreadable:
        assert 0 <= start < stop <= len(damaged)
    if scan.corrupt is False and end == "clean":
        assert scan.frames == items


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=40), st.integers(0, 10**6), st.integers(1, 255))
def test_version_1_segments_never_raise_and_yield_a_prefix(items, pos, mask):
    import struct
    import zlib

    data = bytearray(segment.MAGIC_V1)
    for p in items:
        data += struct.pack("<II", len(p), zlib.crc32(p)) + p
    data[pos % len(data)] ^= mask
    scan = segment.scan(bytes(data))
    assert scan.frames == items[:len(scan.frames)]
    if len(scan.frames) < len(items) and scan.version == 1:
        assert scan.unreadable or scan.torn_tail


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=2000), max_size=40), st.integers(200, 5000))
def test_what_a_writer_appends_is_what_a_reader_reads(items, max_segment_bytes):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        async def go():
            w = spool.SegmentWriter(root, SpoolSettings(durability="os", max_segment_bytes=max_segment_bytes,
                                                        min_free_disk_bytes=0))
            for p in items:
                await w.commit(w.append(p))
            await w.seal()

        # on a thread of its own: a session's Playwright (the tracker tests) keeps a loop running on this one
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, go()).result()
        read = []
        for path in spool.sealed_segments(root):
            scan = segment.read(path)
            assert (scan.sealed, scan.corrupt) == ("clean", False)
            read += scan.frames
        assert read == items
        assert list((root / "new").iterdir()) == []
