"""The distinct-count sketch keeps its stated error, merges exactly, and round-trips."""

from beaconlake.backends.counters.sketch import STANDARD_ERROR, HyperLogLog


def test_stated_error_is_that_of_16384_registers():
    assert round(STANDARD_ERROR, 4) == 0.0081


def test_100k_distinct_ids_within_three_standard_errors():
    h = HyperLogLog()
    for i in range(100_000):
        h.add(f"anon-{i}")
        h.add(f"anon-{i // 2}")  # repeats do not count
    assert abs(h.estimate() - 100_000) / 100_000 < 3 * STANDARD_ERROR


def test_error_bound_holds_across_sizes_and_seeds():
    # 3 sigma covers 99.7% of estimates; over 12 independent runs a failure would be a real bug
    for seed in range(4):
        for n in (500, 5_000, 40_000):
            h = HyperLogLog()
            for i in range(n):
                h.add(f"s{seed}-{i}")
            assert abs(h.estimate() - n) / n < 3 * STANDARD_ERROR, (seed, n, h.estimate())


def test_small_counts_are_exact_enough_to_show():
    h = HyperLogLog()
    for i in range(20):
        h.add(str(i))
    assert h.count() == 20


def test_merge_equals_the_sketch_of_the_union_and_serialises():
    a, b, both = HyperLogLog(), HyperLogLog(), HyperLogLog()
    for i in range(30_000):
        a.add(f"x{i}")
        both.add(f"x{i}")
    for i in range(20_000, 60_000):
        b.add(f"x{i}")
        both.add(f"x{i}")
    small = HyperLogLog()
    small.add("x1")
    merged = HyperLogLog.from_bytes(a.to_bytes()).merge(HyperLogLog.from_bytes(b.to_bytes())).merge(small)
    assert merged.registers() == both.registers()  # register-wise max: exact, not approximate
    assert HyperLogLog.from_bytes(small.to_bytes()).registers() == small.registers()
