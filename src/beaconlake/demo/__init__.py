"""``beaconlake demo``: the whole pipeline on a sample shop, with simulated and real visitors."""
