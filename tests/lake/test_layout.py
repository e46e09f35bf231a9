"""lake/layout.py: every key kind reads back as it was built, and nothing else reads as a key."""

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from beaconlake.lake import layout

# Any text a part could hold, as long as it is one path segment; segment names also cannot
# start with a dot (storage's temporary files do).
PART = st.text(min_size=1, max_size=30).filter(lambda t: "/" not in t)
SEGMENT = PART.filter(lambda t: not t.startswith("."))
TENANT = st.one_of(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True), PART)
LEVEL = st.one_of(st.sampled_from(["low", "mid", "high"]), PART)
DAY = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))


@given(TENANT, LEVEL, DAY, SEGMENT)
def test_raw_keys_read_back(tenant, level, day, segment):
    key = layout.raw_key(tenant, level, day, segment)
    assert layout.parse_raw(key) == layout.RawKey(tenant, level, day, segment)
    assert key.startswith(layout.raw_prefix(tenant, level, day))
    assert key.startswith(layout.raw_prefix(tenant)) and key.startswith(layout.RAW)
    assert layout.parse_rejected(key) is None and layout.parse_stats(key) is None


@given(TENANT, DAY, SEGMENT)
def test_rejected_keys_read_back(tenant, day, segment):
    key = layout.rejected_key(tenant, day, segment)
    assert layout.parse_rejected(key) == layout.RejectedKey(tenant, day, segment)
    assert key.startswith(layout.rejected_prefix(tenant, day))
    assert layout.parse_raw(key) is None


@given(TENANT, st.sampled_from(["minute", "hour", "day"]), DAY, st.integers(-(2**63), 2**63))
def test_stats_keys_read_back(tenant, grain, day, since):
    key = layout.stats_key(tenant, grain, day, since)
    assert layout.parse_stats(key) == layout.StatsKey(tenant, grain, day, since)
    assert key.startswith(layout.stats_prefix(tenant, grain))


@given(TENANT, LEVEL, DAY, SEGMENT)
def test_quarantine_keys_read_back(tenant, level, day, segment):
    raw = layout.raw_key(tenant, level, day, segment)
    assert layout.parse_quarantine(layout.quarantine_key(raw)) == layout.QuarantineKey(raw, reason=False)
    assert layout.parse_quarantine(layout.reason_key(raw)) == layout.QuarantineKey(raw, reason=True)
    assert layout.quarantine_key(raw).startswith(layout.quarantine_prefix(tenant))
    assert layout.parse_raw(layout.quarantine_key(raw)) is None  # a reader of raw/ never trips on it


def test_the_layout_is_what_readers_outside_beaconlake_see():
    """The documented spelling (README, DESIGN): a change here is a change for every reader."""
    day = date(2026, 3, 7)
    assert layout.raw_key("shop", "mid", day, "1764-seg") == "raw/tenant=shop/level=mid/year=2026/month=03/day=07/1764-seg.parquet"
    assert layout.rejected_key("shop", day, "s") == "rejected/tenant=shop/year=2026/month=03/day=07/s.parquet"
    assert layout.stats_key("shop", "hour", day, 42) == "stats/tenant=shop/grain=hour/year=2026/month=03/day=07/42.parquet"
    assert layout.reason_key("raw/tenant=shop/level=mid/year=2026/month=03/day=07/s.parquet") == \
        "quarantine/raw/tenant=shop/level=mid/year=2026/month=03/day=07/s.parquet.reason.json"


@pytest.mark.parametrize("key", [
    "raw/tenant=shop/level=mid/year=2026/month=02/day=30/s.parquet",  # no such day
    "raw/tenant=shop/level=mid/year=2026/month=02/day=03/.s.parquet.1.tmp",  # a put in progress
    "raw/tenant=shop/level=mid/year=2026/month=02/day=03/s.parquet\n",
    "raw/tenant=shop/year=2026/month=02/day=03/s.parquet",
    "raw/tenant=/level=mid/year=2026/month=02/day=03/s.parquet",
    "raw/tenant=shop/level=mid/year=26/month=02/day=03/s.parquet",
    "raw/tenant=shop/level=mid/year=2026/month=02/day=03/x/s.parquet",
])
def test_what_no_builder_makes_is_no_key(key):
    assert layout.parse_raw(key) is None
    assert layout.parse_quarantine("quarantine/" + key) is None


@pytest.mark.parametrize("build", [
    lambda: layout.raw_key("a/b", "mid", date(2026, 1, 1), "s"),
    lambda: layout.raw_key("", "mid", date(2026, 1, 1), "s"),
    lambda: layout.raw_key("shop", "mid", date(2026, 1, 1), ".hidden"),
    lambda: layout.rejected_key("shop", date(2026, 1, 1), "x/y"),
    lambda: layout.quarantine_key("rejected/tenant=shop/year=2026/month=01/day=01/s.parquet"),
])
def test_a_builder_refuses_what_would_not_read_back(build):
    with pytest.raises(ValueError, match="lake key|not a raw key"):
        build()


REQUEST = st.from_regex(r"[0-9a-z][0-9a-z-]{0,40}", fullmatch=True)


@given(st.sampled_from([layout.PENDING, layout.DONE]), TENANT, REQUEST)
def test_erasure_and_suppression_keys_read_back(state, tenant, request):
    key = layout.erasure_key(state, tenant, request)
    assert key.startswith(layout.erasure_prefix(state, tenant))
    assert layout.parse_erasure(key) == layout.ErasureKey(state, tenant, request)
    assert layout.parse_suppress(layout.suppress_key(tenant, request)) == (tenant, request)


@given(TENANT, DAY, st.integers(0, 10**13 - 1), REQUEST, st.from_regex(r"[a-z_]{1,20}", fullmatch=True))
def test_audit_keys_read_back(tenant, day, at_ms, request, what):
    key = layout.audit_key(tenant, day, at_ms, request, what)
    assert key.startswith(layout.audit_prefix(tenant))
    assert layout.parse_audit(key) == layout.AuditKey(tenant, day, at_ms, request, what)


@pytest.mark.parametrize("build", [
    lambda: layout.erasure_key("pending", "shop", "Bad_Id"),
    lambda: layout.erasure_key("lost", "shop", "abc"),
    lambda: layout.suppress_key("shop", "../x"),
    lambda: layout.audit_key("shop", date(2026, 1, 1), -1, "abc", "requested"),
    lambda: layout.audit_key("shop", date(2026, 1, 1), 1, "abc", "Requested-2"),
])
def test_privacy_builders_refuse_what_would_not_read_back(build):
    with pytest.raises(ValueError):
        build()
