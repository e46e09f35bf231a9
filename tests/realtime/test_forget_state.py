"""An erasure drops a person's detector state: in memory (Detector.forget) and in the checkpoint
a stopped deliverer left (forget_in_checkpoint); everyone else's state is kept."""

from __future__ import annotations

from beaconlake import config
from beaconlake.realtime.consumer import forget_in_checkpoint
from beaconlake.realtime.sequences import Detector, Seen

T0 = 1_764_230_400_000
ABANDONED = {"name": "abandoned_cart", "within_secs": 60, "steps": [{"name": "add_to_cart"}],
             "not_followed_by": {"name": "checkout", "within_secs": 1800}}


def test_a_forgotten_person_leaves_the_checkpoint(tmp_path):
    tenant = {"id": "shop", "write_key": "wk_" + "a" * 20, "read_key": "rk_" + "b" * 20, "sequences": [ABANDONED]}
    settings = config.parse({"tenants": [tenant]}, tmp_path, environ={})
    det = Detector(settings.tenants, 0, 200)
    for i, (anon, user) in enumerate([("gone-1", "gone-user"), ("gone-2", "gone-user"), ("kept", None)]):
        det.feed("shop", Seen(f"e{i}", "mid", "add_to_cart", anon, user, "s", T0 + i, None, None, None,
                              {"secret": f"marker-{anon}"}), T0 + i)
    settings.realtime_path.mkdir(parents=True)
    path = settings.realtime_path / "detector.bin"
    path.write_bytes(det.dump())
    assert b"marker-gone-1" in path.read_bytes() or b"gone-1" in path.read_bytes()

    assert forget_in_checkpoint(settings, "shop", {"gone-user"}) == 2  # both browsers of the user
    data = path.read_bytes()
    assert b"gone-1" not in data and b"gone-2" not in data and b"gone-user" not in data and b"kept" in data
    again = Detector(settings.tenants, 0, 200)
    again.load(data)
    assert set(again.state.tenants["shop"].people) == {"kept"}
    assert set(again.state.tenants["shop"].pending) <= {"kept"}
    assert forget_in_checkpoint(settings, "other", {"kept"}) == 0
