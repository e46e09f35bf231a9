"""The segment format (lake/segment.py): what a reader makes of whole, torn and damaged bytes."""

import struct
import zlib

import pytest

from beaconlake.errors import SpoolCorrupt
from beaconlake.lake import segment

SALT = b"saltsalt"
SEED = segment.seed_of(SALT)


def build(payloads, kind=segment.CLEAN, trailer=True) -> tuple[bytes, list[int]]:
    """A segment's bytes, and the offset of each frame."""
    data = bytearray(segment.header(SALT))
    offsets = []
    for p in payloads:
        offsets.append(len(data))
        data += segment.frame(SEED, p)
    if trailer:
        data += segment.trailer(SEED, kind, len(payloads) if kind == segment.CLEAN else 0, len(data))
    return bytes(data), offsets


PAYLOADS = [f"payload-{i:03d}".encode() * 3 for i in range(100)]


def test_a_whole_segment_reads_back_clean():
    data, _ = build(PAYLOADS)
    scan = segment.scan(data)
    assert scan.frames == PAYLOADS
    assert (scan.sealed, scan.frames_expected, scan.corrupt, scan.unreadable, scan.torn_tail) == ("clean", 100, False, [], None)


def test_one_flipped_byte_costs_one_frame_not_the_rest():
    data, offsets = build(PAYLOADS)
    damaged = bytearray(data)
    damaged[offsets[3] + 20] ^= 0x01  # inside frame 3's payload
    scan = segment.scan(bytes(damaged))
    assert scan.frames == PAYLOADS[:3] + PAYLOADS[4:]
    assert scan.unreadable == [(offsets[3], offsets[4])]
    assert scan.corrupt
    assert any("the trailer counts 100 frames, 99 read" in p for p in scan.problems)


def test_a_flipped_length_is_caught_by_the_crc_and_reading_resynchronises():
    data, offsets = build(PAYLOADS)
    damaged = bytearray(data)
    damaged[offsets[10] + 4] ^= 0x40  # the length field of frame 10: it would swallow the next frames
    scan = segment.scan(bytes(damaged))
    assert scan.frames == PAYLOADS[:10] + PAYLOADS[11:]
    assert scan.unreadable == [(offsets[10], offsets[11])]


def test_inserted_garbage_is_reported_and_skipped():
    data, offsets = build(PAYLOADS[:5])
    garbage = b"\x00garbage" * 10 + segment.SYNC + b"\xff" * 9
    damaged = data[:offsets[2]] + garbage + data[offsets[2]:]
    scan = segment.scan(damaged)
    assert scan.frames == PAYLOADS[:5]
    assert scan.unreadable == [(offsets[2], offsets[2] + len(garbage))]
    assert scan.corrupt


def test_a_frame_hidden_in_a_payload_is_never_taken_for_a_real_one():
    # A client may send any bytes, e.g. a well-formed frame of another segment (another salt).
    # When reading resynchronises inside such a payload, the salt keeps it from passing.
    forged = segment.frame(segment.seed_of(b"othersal"), b"FORGED-RECORD")
    payloads = [b"before", b"x" * 20 + forged + b"y" * 20, b"after"]
    data, offsets = build(payloads)
    damaged = bytearray(data)
    damaged[offsets[1] + 1] ^= 0xFF  # break the carrier frame's sync marker
    scan = segment.scan(bytes(damaged))
    assert b"FORGED-RECORD" not in scan.frames
    assert scan.frames == [b"before", b"after"]


def test_a_clean_segment_cut_short_is_corruption_not_a_torn_tail():
    data, offsets = build(PAYLOADS)
    scan = segment.scan(data[:offsets[50] + 7])
    assert scan.frames == PAYLOADS[:50]
    assert scan.sealed is None
    assert scan.corrupt
    assert scan.unreadable == [(offsets[50], offsets[50] + 7)]


def test_a_torn_tail_before_a_recovered_trailer_is_expected():
    # a writer died mid-write; the deliverer sealed its segment with a "recovered" trailer
    data, offsets = build(PAYLOADS[:5], trailer=False)
    torn = data + segment.frame(SEED, b"never acknowledged")[:9]
    sealed = torn + segment.trailer(SEED, segment.RECOVERED, 0, len(torn))
    scan = segment.scan(sealed)
    assert scan.frames == PAYLOADS[:5]
    assert scan.torn_tail == (len(data), len(torn))
    assert (scan.sealed, scan.corrupt, scan.unreadable) == ("recovered", False, [])


def test_damage_before_the_tear_of_a_recovered_segment_is_still_corruption():
    data, offsets = build(PAYLOADS[:5], trailer=False)
    damaged = bytearray(data + segment.frame(SEED, b"torn")[:9])
    damaged[offsets[1] + 15] ^= 0x10
    sealed = bytes(damaged) + segment.trailer(SEED, segment.RECOVERED, 0, len(damaged))
    scan = segment.scan(sealed)
    assert scan.frames == [PAYLOADS[0], *PAYLOADS[2:5]]
    assert scan.unreadable == [(offsets[1], offsets[2])]
    assert scan.torn_tail is not None
    assert scan.corrupt


def test_a_damaged_header_makes_the_whole_segment_unreadable():
    data, _ = build(PAYLOADS[:3])
    damaged = bytearray(data)
    damaged[9] ^= 0x01  # in the salt
    scan = segment.scan(bytes(damaged))
    assert (scan.version, scan.frames, scan.unreadable) == (None, [], [(0, len(data))])
    assert "header fails its crc32 check" in scan.problems[0]


def test_not_a_segment(tmp_path):
    path = tmp_path / "x.seg"
    path.write_bytes(b"hello world")
    with pytest.raises(SpoolCorrupt, match="not a beaconlake spool segment"):
        list(segment.read_frames(path))


def v1(payloads, tail=b"") -> bytes:
    out = bytearray(segment.MAGIC_V1)
    for p in payloads:
        out += struct.pack("<II", len(p), zlib.crc32(p)) + p
    return bytes(out + tail)


def test_version_1_segments_are_still_read():
    scan = segment.scan(v1(PAYLOADS[:4], tail=struct.pack("<II", 1000, 0) + b"partial"))
    assert scan.version == 1
    assert scan.frames == PAYLOADS[:4]
    assert scan.torn_tail is not None and not scan.corrupt


def test_version_1_damage_inside_the_file_is_corruption():
    data = bytearray(v1(PAYLOADS[:4]))
    data[20] ^= 0xFF  # the first frame's payload
    scan = segment.scan(bytes(data))
    assert scan.frames == []
    assert scan.unreadable == [(8, len(data))]
    assert scan.corrupt


def test_tail_is_trailer_tells_a_sealed_segment_from_an_open_one():
    data, _ = build(PAYLOADS[:2])
    assert segment.tail_is_trailer(data[:segment.HEADER.size], data[-segment.TRAILER_SIZE:])
    open_data, _ = build(PAYLOADS[:2], trailer=False)
    assert not segment.tail_is_trailer(open_data[:segment.HEADER.size], open_data[-segment.TRAILER_SIZE:])
