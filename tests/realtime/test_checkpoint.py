"""The spool detector's checkpoint (snapshot + journal of deltas): whatever a detector went
through, loading what ``save`` wrote gives back its state exactly, and a crash in the middle of
an append gives back the state of the last ``save`` that returned."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from beaconlake import config
from beaconlake.realtime import checkpoint
from beaconlake.realtime.checkpoint import Checkpoint
from beaconlake.realtime.sequences import Detector, Seen

T0 = 1_764_230_400_000
DEFS = [
    {"name": "considered", "within_secs": 60, "steps": [
        {"name": "product_view", "where": [{"field": "props.category", "op": "exists"}]},
        {"name": "product_view", "same": ["props.category"]},
        {"name": "add_to_cart"}]},
    {"name": "abandoned", "within_secs": 30, "steps": [{"name": "add_to_cart"}],
     "not_followed_by": {"name": "checkout", "within_secs": 20}},
]
TENANTS = [{"id": t, "write_key": f"wk_{t}" + "a" * 20, "read_key": f"rk_{t}" + "b" * 20, "sequences": DEFS}
           for t in ("shop", "blog")]


def detector() -> Detector:
    parsed = config.parse({"tenants": TENANTS}, Path("/tmp"), environ={})
    return Detector(parsed.tenants, 2_000, 50)


def state_of(det: Detector) -> object:
    return msgspec.to_builtins(det.state)  # dicts compare without their order


anon = st.sampled_from(["a1", "a2", "a3", "a4"])
tenant = st.sampled_from(["shop", "blog"])
feed = st.tuples(st.just("feed"), tenant, anon, st.sampled_from(["product_view", "add_to_cart", "checkout", "page_view"]),
                 st.integers(-5_000, 20_000), st.sampled_from([None, "hats", "shoes"]))
report = st.tuples(st.just("report"), tenant, anon, st.sampled_from(["considered", "abandoned"]), st.integers(0, 30))
clock = st.tuples(st.sampled_from(["due", "expire", "idle"]), st.integers(0, 2_000_000))
forget = st.tuples(st.just("forget"), tenant, st.sets(anon, max_size=2))
save = st.tuples(st.just("save"), st.sampled_from([False, False, False, True]))  # True: a whole snapshot
ops = st.lists(st.one_of(feed, feed, report, clock, clock, forget, save, save), max_size=60)


def expire_checked(det: Detector, now: int) -> None:
    """``det.expire(now)``, held to the rule it must keep whatever its index says: every person
    idle past the longest window and not waiting for a match to go out is forgotten, every report
    past its time too, and nothing else."""
    want = {}
    for tenant, ts in det.state.tenants.items():
        window = det.rules[tenant].window_ms if tenant in det.rules else 0
        people = {a for a, p in ts.people.items()
                  if a in ts.pending or (p.history and p.history[-1].ts >= now - window)}
        want[tenant] = (people, {k for k, until in ts.reported.items() if until >= now})
    det.expire(now)
    assert {t: (set(ts.people), set(ts.reported)) for t, ts in det.state.tenants.items()} == want


def run(det: Detector, saved: Checkpoint, steps: list, states: list) -> None:
    """Apply ``steps``; after each save, what is on disk must load as the live state."""
    t, ids = T0, []
    for step in steps:
        kind = step[0]
        if kind == "feed":
            _, ten, a, name, dt, cat = step
            t += max(dt, 0)
            eid = f"e{len(ids)}"
            ids.append(eid)
            det.feed(ten, Seen(eid, "mid", name, a, None, "s", t + min(dt, 0), None, None, None,
                               {"category": cat} if cat else None), t)
        elif kind == "report":
            _, ten, a, definition, back = step
            matched = ids[-1 - back:] if ids else []
            det.feed(ten, Seen(f"r{len(ids)}", "high", definition, a, None, "s", t, None, None, None,
                               {"source": "browser", "definition": definition, "matched_event_ids": matched}), t)
        elif kind == "due":
            det.due(t + step[1])
        elif kind == "expire":
            expire_checked(det, t + step[1])
        elif kind == "idle":  # what a tick does: matches out, idle people and old reports forgotten
            det.due(t + step[1])
            expire_checked(det, t + step[1])
        elif kind == "forget":
            det.forget(step[1], step[2].__contains__)
        else:
            det.state.processed = [*det.state.processed, f"seg{len(states)}"]
            saved.save(det, whole=step[1])
            states.append(state_of(det))
            again = detector()
            assert Checkpoint(saved.folder).load(again)
            assert state_of(again) == states[-1]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
@example(steps=[("feed", "shop", "a1", "add_to_cart", 0, None), ("save", False), ("due", 100_000), ("save", False)])
@example(steps=[("feed", "shop", "a1", "add_to_cart", 0, None), ("expire", 100_000), ("idle", 100_000)])
@example(steps=[("feed", "shop", "a1", "add_to_cart", 0, None), ("expire", 60_000), ("expire", 60_001)])
@example(steps=[("feed", "shop", "a1", "add_to_cart", 0, None), ("expire", 61_000), ("idle", 60_001)])  # clock set back
def test_what_is_saved_loads_as_the_live_state(tmp_path_factory, steps, monkeypatch):
    monkeypatch.setattr(checkpoint, "MIN_JOURNAL_BYTES", 2_000)  # snapshots and journals both, in small examples
    folder = tmp_path_factory.mktemp("ckpt")
    det, states = detector(), []
    saved = Checkpoint(folder)
    run(det, saved, steps, states)
    # and a process that starts from the files goes on saving deltas that load as its state
    restarted = detector()
    if Checkpoint(folder).load(restarted):
        resumed = Checkpoint(folder)
        resumed.load(restarted)
        run(restarted, resumed, steps[:20] + [("save", False)], [])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops, cut=st.floats(0.0, 1.0, exclude_max=True))
def test_a_torn_append_loads_as_the_last_whole_save(tmp_path_factory, steps, cut):
    folder = tmp_path_factory.mktemp("torn")
    det, states = detector(), []
    saved = Checkpoint(folder)
    saved.save(det, whole=True)
    states.append(state_of(det))
    run(det, saved, [*steps, ("save", False)], states)
    journal = folder / checkpoint.JOURNAL
    before = saved.journal_bytes
    det.feed("shop", Seen("last", "mid", "add_to_cart", "a9", None, "s", T0, None, None, None, None), T0)
    saved.save(det)
    if saved.journal_bytes <= before:
        return  # it took a snapshot: nothing was appended to tear
    os.truncate(journal, before + int((saved.journal_bytes - before) * cut))  # the crash, mid-append
    again, reloaded = detector(), Checkpoint(folder)
    assert reloaded.load(again)
    assert state_of(again) == states[-1]
    assert journal.stat().st_size == before  # cut back, so the next entry follows the last whole one
    again.feed("shop", Seen("next", "mid", "add_to_cart", "a8", None, "s", T0, None, None, None, None), T0)
    reloaded.save(again)
    third = detector()
    assert Checkpoint(folder).load(third) and state_of(third) == state_of(again)


def test_entries_of_an_older_snapshot_are_skipped(tmp_path):
    """A crash after a new snapshot is in place but before the journal is emptied."""
    det = detector()
    saved = Checkpoint(tmp_path)
    saved.save(det, whole=True)
    det.feed("shop", Seen("e1", "mid", "add_to_cart", "a1", None, "s", T0, None, None, None, None), T0)
    saved.save(det)
    old_journal = (tmp_path / checkpoint.JOURNAL).read_bytes()
    assert old_journal
    det.forget("shop", {"a1"}.__contains__)
    saved.save(det, whole=True)
    (tmp_path / checkpoint.JOURNAL).write_bytes(old_journal)  # as if the truncate never happened
    again = detector()
    assert Checkpoint(tmp_path).load(again)
    assert state_of(again) == state_of(det) and "a1" not in again.state.tenants["shop"].people


def test_a_failed_append_makes_the_next_save_whole(tmp_path, monkeypatch):
    det = detector()
    saved = Checkpoint(tmp_path)
    saved.save(det, whole=True)
    det.feed("shop", Seen("e1", "mid", "add_to_cart", "a1", None, "s", T0, None, None, None, None), T0)

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(saved, "_append", full)
    with pytest.raises(OSError):
        saved.save(det)
    monkeypatch.undo()
    det.feed("shop", Seen("e2", "mid", "product_view", "a2", None, "s", T0, None, None, None, None), T0)
    saved.save(det)  # a1's change went with the failed entry: only a whole snapshot holds it now
    again = detector()
    assert Checkpoint(tmp_path).load(again)
    assert state_of(again) == state_of(det) and "a1" in again.state.tenants["shop"].people


def test_a_corrupt_entry_is_kept_aside_and_said_not_cut_off_quietly(tmp_path, caplog):
    """Bit rot, not a crash: the entries after it are lost from the state, so the journal as it
    was is kept and an error names it; a torn tail only gets a warning."""
    det = detector()
    saved = Checkpoint(tmp_path)
    saved.save(det, whole=True)
    states = []
    for i in range(3):
        det.feed("shop", Seen(f"e{i}", "mid", "add_to_cart", f"a{i}", None, "s", T0, None, None, None, None), T0)
        saved.save(det)
        states.append((state_of(det), saved.journal_bytes))
    journal = tmp_path / checkpoint.JOURNAL
    original = journal.read_bytes()
    damaged = bytearray(original)
    damaged[states[0][1] + 12] ^= 0xFF  # inside the second entry's bytes
    journal.write_bytes(bytes(damaged))
    again = detector()
    assert Checkpoint(tmp_path).load(again)
    assert state_of(again) == states[0][0] and journal.stat().st_size == states[0][1]
    [kept] = list(tmp_path.glob(f"{checkpoint.JOURNAL}.corrupt-*"))
    assert kept.read_bytes() == bytes(damaged)
    assert any(r.levelname == "ERROR" and "fails its CRC" in r.getMessage() for r in caplog.records)

    caplog.clear()
    with open(journal, "ab") as f:
        f.write(original[states[0][1]:states[0][1] + 5])  # a crash a few bytes into an append
    assert Checkpoint(tmp_path).load(detector())
    assert journal.stat().st_size == states[0][1] and len(list(tmp_path.glob("*.corrupt-*"))) == 1
    assert [r.levelname for r in caplog.records if "partial entry" in r.getMessage()] == ["WARNING"]


@pytest.mark.parametrize("damage", ["snapshot", "entry"])
def test_an_unreadable_checkpoint_is_set_aside_and_the_detector_starts_empty(tmp_path, caplog, damage):
    """The deliverer loads this at start: raising would stop lake delivery for everyone."""
    det = detector()
    saved = Checkpoint(tmp_path)
    saved.save(det, whole=True)
    det.feed("shop", Seen("e1", "mid", "add_to_cart", "a1", None, "s", T0, None, None, None, None), T0)
    saved.save(det)
    if damage == "snapshot":
        (tmp_path / checkpoint.SNAPSHOT).write_bytes(b"garbage\xff\xfe")
    else:  # whole, with a good CRC, but no entry (an older or newer format)
        junk = msgspec.msgpack.encode({"no": "delta"})
        (tmp_path / checkpoint.JOURNAL).write_bytes(checkpoint._HEAD.pack(len(junk), zlib.crc32(junk)) + junk)
    again = detector()
    loader = Checkpoint(tmp_path)
    assert not loader.load(again)
    assert state_of(again) == state_of(detector())
    assert sorted(p.name.split(".corrupt-")[0] for p in tmp_path.glob("*.corrupt-*")) == [
        checkpoint.SNAPSHOT, checkpoint.JOURNAL]
    assert any(r.levelname == "ERROR" and "cannot be read" in r.getMessage() for r in caplog.records)
    again.feed("shop", Seen("e2", "mid", "add_to_cart", "a2", None, "s", T0, None, None, None, None), T0)
    loader.save(again)  # the next save is whole, and loads
    third = detector()
    assert Checkpoint(tmp_path).load(third) and state_of(third) == state_of(again)
