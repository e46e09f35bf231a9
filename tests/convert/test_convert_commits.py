"""Concurrent commits (convert/commits.py): a commit that meets another writer's newer snapshot
is rebuilt on it when it still holds, and refused when it does not; never a duplicate, never a
lost row. The other writer is a second TableStore on the same catalog (another node), committing
between the first one's load and its commit."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from pyiceberg.expressions import GreaterThanOrEqual
from convert_lake import Lake
from rawlake import MIN, event, ms, write_raw

from beaconlake.convert import tables
from beaconlake.convert.errors import ConvertError
from beaconlake.convert.run import open_store
from beaconlake.units import DAY_MS


@pytest.fixture
def lake(tmp_path, scratch):
    """Two converted days of one tenant (one data file each in the events table)."""
    lake = Lake(tmp_path / "data", "duckdb", scratch)
    t1, t2 = ms("2026-03-10T10:00:00"), ms("2026-03-11T10:00:00")
    write_raw(lake.lake, [event(f"p{i}", t + i * MIN) for t in (t1, t2) for i in range(5)])
    assert lake.convert().events == 10
    return lake


def event_ids(lake: Lake) -> list[str]:
    return sorted(r["event_id"] for r in lake.rows("events"))


def restaged(store, f, folder) -> str:
    """A fresh copy of data file ``f`` where engine output is staged (tenant=/event_date= folders)."""
    data = store.table("events").io.new_input(f.uri).open().read()
    dest = folder / "tenant=shop" / f"event_date={f.day}" / f"copy-{f.day}.parquet"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return str(dest)


def days(store, day: str):
    return store.day_files(tables.EVENTS, "shop", ms(f"{day}T00:00:00"), ms(f"{day}T00:00:00") + DAY_MS)


def test_a_file_swap_retries_on_the_new_snapshot_when_its_files_are_still_there(lake, tmp_path):
    before = event_ids(lake)
    mine = open_store(lake.settings, lake.sections, hold=True)  # this node: loads the table now
    [f11] = days(mine, "2026-03-11")
    other = open_store(lake.settings, lake.sections, hold=True)  # another node commits first
    [f10] = days(other, "2026-03-10")
    other.replace_files(tables.EVENTS, [f10.file], [restaged(other, f10, tmp_path / "other")], "run-other")
    snapshots = len(mine.table("events").snapshots())
    mine.replace_files(tables.EVENTS, [f11.file], [restaged(mine, f11, tmp_path / "mine")], "run-mine")
    # the held table was refreshed and the swap rebuilt on the other node's snapshot
    assert len(mine.table("events").snapshots()) == snapshots + 2
    assert event_ids(lake) == before  # no row lost, none twice
    live = {t.file.file_path for t in open_store(lake.settings, lake.sections).table("events").scan().plan_files()}
    assert f10.uri not in live and f11.uri not in live and len(live) == 2


def test_a_file_swap_is_refused_when_another_writer_replaced_a_file_it_deletes(lake, tmp_path):
    before = event_ids(lake)
    mine = open_store(lake.settings, lake.sections, hold=True)
    [f10] = days(mine, "2026-03-10")
    other = open_store(lake.settings, lake.sections, hold=True)
    [f10_other] = days(other, "2026-03-10")
    other.replace_files(tables.EVENTS, [f10_other.file], [restaged(other, f10_other, tmp_path / "other")], "run-other")
    with pytest.raises(ConvertError, match=r"events: another writer committed meanwhile .* run-other.*file\(s\) this "
                                           r"swap deletes are gone"):
        mine.replace_files(tables.EVENTS, [f10.file], [restaged(mine, f10, tmp_path / "mine")], "run-mine")
    assert event_ids(lake) == before  # the refused swap added nothing: its copy would have doubled the day


def test_a_day_replace_is_refused_when_another_writer_added_data_to_that_day(lake, tmp_path):
    mine = open_store(lake.settings, lake.sections, hold=True)
    staged = restaged(mine, days(mine, "2026-03-10")[0], tmp_path / "mine")
    other = open_store(lake.settings, lake.sections, hold=True)
    [o10] = days(other, "2026-03-10")
    other.replace_files(tables.EVENTS, [o10.file], [restaged(other, o10, tmp_path / "other")], "run-other")
    r0 = ms("2026-03-10T00:00:00")
    with pytest.raises(ConvertError, match=r"run-other.*1 data file\(s\) it added are in the partitions this replace would delete unseen"):
        mine.replace_days(tables.EVENTS, "shop", r0, r0 + DAY_MS, [staged], "run-mine")
    assert len(event_ids(lake)) == 10


def test_a_day_replace_is_retried_after_other_days_change_or_a_delete(lake, tmp_path):
    r0 = ms("2026-03-10T00:00:00")
    before = event_ids(lake)
    mine = open_store(lake.settings, lake.sections, hold=True)
    staged = restaged(mine, days(mine, "2026-03-10")[0], tmp_path / "mine")
    other = open_store(lake.settings, lake.sections, hold=True)
    [o11] = days(other, "2026-03-11")
    other.replace_files(tables.EVENTS, [o11.file], [restaged(other, o11, tmp_path / "other")], "run-other")
    mine.replace_days(tables.EVENTS, "shop", r0, r0 + DAY_MS, [staged], "run-mine")
    assert event_ids(lake) == before

    # a writer that only deletes (retention, erasure) does not stop it: retried on its snapshot
    mine = open_store(lake.settings, lake.sections, hold=True)
    staged = restaged(mine, days(mine, "2026-03-10")[0], tmp_path / "mine2")
    other = open_store(lake.settings, lake.sections, hold=True)
    # retention dropping day 11 (whole files)
    other.table("events").delete(GreaterThanOrEqual("event_ts", "2026-03-11T00:00:00+00:00"))
    mine.replace_days(tables.EVENTS, "shop", r0, r0 + DAY_MS, [staged], "run-mine")
    rows = lake.rows("events")
    assert sorted((str(r["event_date"]), r["anonymous_id"]) for r in rows) == [("2026-03-10", f"p{i}") for i in range(5)]


def test_converted_files_rows_committed_by_another_run_meanwhile_are_not_added_twice(lake):
    def rows(*keys):
        return pa.table({"tenant": ["shop"] * len(keys), "raw_key": list(keys), "size_bytes": [1] * len(keys),
                         "run_id": ["r"] * len(keys), "converted_at": [0] * len(keys)})

    schema = open_store(lake.settings, lake.sections).arrow_schema("converted_files")
    mine = open_store(lake.settings, lake.sections, hold=True)
    mine.converted()  # loads the table: the snapshot its append is built on
    other = open_store(lake.settings, lake.sections, hold=True)
    other.record_converted(_shaped(rows("a", "b"), schema), "run-other")
    mine.record_converted(_shaped(rows("b", "c"), schema), "run-mine")
    keys = [k for k, _ in open_store(lake.settings, lake.sections).converted() if k in ("a", "b", "c")]
    assert sorted(keys) == ["a", "b", "c"]
    table = open_store(lake.settings, lake.sections).table("converted_files").scan().to_arrow()
    assert table.column("raw_key").to_pylist().count("b") == 1


def test_a_commit_that_keeps_conflicting_gives_up_after_the_bounded_tries(lake, monkeypatch):
    from pyiceberg.exceptions import CommitFailedException

    from beaconlake.convert import commits

    monkeypatch.setattr(commits, "RETRY_PAUSE_SECS", (0, 0))
    tries = []

    def always_conflicts(table):
        tries.append(1)
        raise CommitFailedException("branch main has changed")

    store = open_store(lake.settings, lake.sections, hold=True)
    with pytest.raises(ConvertError, match=f"conflicted {commits.COMMIT_ATTEMPTS} times"):
        commits.commit_with_retry("events", store.table("events"), always_conflicts)
    assert len(tries) == commits.COMMIT_ATTEMPTS


def _shaped(t: pa.Table, schema: pa.Schema) -> pa.Table:
    """``t``'s columns that the table has, in its order and types; others null."""
    return pa.table({f.name: (t.column(f.name) if f.name in t.column_names else pa.nulls(t.num_rows))
                     .cast(f.type) for f in schema})



@hyp_settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mine=st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=6, unique=True),
       theirs=st.lists(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=4, unique=True), min_size=1,
                       max_size=3))
def test_every_converted_file_is_recorded_once_whatever_other_runs_commit_meanwhile(tmp_path_factory, mine, theirs):
    """One run's append of converted_files rows meets 1-3 commits of other runs (overlapping keys)
    made after it loaded the table: the table ends with every key once."""
    from beaconlake import config
    from beaconlake.backends.catalog.settings import SqlCatalogSettings
    from beaconlake.convert.settings import ConvertSettings

    root = tmp_path_factory.mktemp("conflict")
    settings = config.parse({"data_dir": str(root), "tenants": [{"id": "shop", "write_key": "w" * 20,
                                                                  "read_key": "r" * 20}]}, root, environ={})
    sections = (ConvertSettings(), None, SqlCatalogSettings())
    setup = open_store(settings, sections)
    setup.ensure([])
    schema = setup.arrow_schema("converted_files")

    def rows(keys):
        return pa.table({f.name: (pa.array(list(keys)) if f.name == "raw_key" else
                                  pa.array([1] * len(keys)) if f.name == "size_bytes" else pa.nulls(len(keys)))
                         .cast(f.type) for f in schema})

    run = open_store(settings, sections, hold=True)
    run.converted()  # its base snapshot
    for i, keys in enumerate(theirs):
        other = open_store(settings, sections, hold=True)
        known = {k for k, _ in other.converted()}  # the other runs ran one after another: each saw the last
        fresh = [k for k in keys if k not in known]
        if fresh:
            other.record_converted(rows(fresh), f"run-other-{i}")
    run.record_converted(rows(mine), "run-mine")
    recorded = open_store(settings, sections).table("converted_files").scan().to_arrow().column("raw_key").to_pylist()
    assert sorted(recorded) == sorted(set(mine).union(*theirs))  # every key, none twice


def test_a_transaction_reads_its_staged_metadata_once_per_update_and_sees_each_update(lake):
    """commits.transaction keeps pyiceberg's rebuilt metadata between updates (a commit reads it
    per file it adds), and never hands back a copy from before an update was staged."""
    from beaconlake.convert.commits import transaction

    table = open_store(lake.settings, lake.sections, hold=True).table("events")
    tx = transaction(table)
    first = tx.table_metadata
    assert tx.table_metadata is first  # no copy per read
    tx.set_properties(**{"beaconlake.test": "1"})
    staged = tx.table_metadata
    assert staged is not first and staged.properties.get("beaconlake.test") == "1"
    assert "beaconlake.test" not in first.properties
    tx.set_properties(**{"beaconlake.test": "2"})
    assert tx.table_metadata.properties["beaconlake.test"] == "2"
    tx.commit_transaction()
    assert table.properties["beaconlake.test"] == "2"
    # after the commit the table's metadata is new: a transaction on it starts from there
    assert transaction(table).table_metadata.properties["beaconlake.test"] == "2"
