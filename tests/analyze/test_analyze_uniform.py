"""A young site whose visitors all behave the same: analyze writes their profiles without
segments, rather than failing the run (every run of the scheduler failed so, until the behaviour
of its visitors diverged)."""

from __future__ import annotations

import pytest
from analyze_lake import DAY_MS, START_MS, make_settings
from convert.rawlake import event, write_raw

from beaconlake.analyze import segments
from beaconlake.analyze.run import analyze
from beaconlake.convert.run import convert


def test_people_who_all_behave_the_same_get_profiles_and_no_segments(tmp_path):
    settings = make_settings(tmp_path)
    people = 30  # past analyze.min_people (20), so segmentation is tried
    events = [event(f"p{i}", START_MS + d * DAY_MS + 9 * 3_600_000 + k * 60_000, url=f"https://shop.example/{k}")
              for i in range(people) for d in range(3) for k in range(3)]
    write_raw(tmp_path / "data" / "lake", events)
    convert(settings, progress=False)
    summary = analyze(settings)
    [shop] = [t for t in summary.tenants if t.tenant == "shop"]
    assert shop.people == people and shop.updated == people
    assert shop.segments is None

    from beaconlake.backends.profiles import open_profiles

    store = open_profiles(settings.profiles)
    try:
        assert store.segments("shop") == []
        assert len(store.person_ids("shop")) == people
    finally:
        store.close()


def test_fit_refuses_identical_rows_by_name_and_never_asks_for_more_clusters_than_distinct_points():
    rows = [{"sessions_per_week": 1.0, "pageviews_per_session": 3.0}] * 25
    with pytest.raises(segments.TooUniform, match="all behave the same"):
        segments.fit(rows, 8)
    two_kinds = rows[:20] + [{"sessions_per_week": 5.0, "pageviews_per_session": 1.0}] * 5
    model = segments.fit(two_kinds, 8)
    assert model["k"] == 2 and sorted(model["sizes"]) == [5, 20]
