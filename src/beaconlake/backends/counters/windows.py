"""Mergeable window aggregates: what a minute of one (tenant, event name, path) holds.

The counters seam's data: the realtime stage folds events into these windows, and every
counters backend stores, merges and rolls them up; so they live with the seam, which imports
nothing of the stages.

A window keeps the count, a distinct-count sketch of anonymous ids, and for each numeric
property count / sum / sum of squares / min / max: every one of these merges by adding or
by taking the min or max, so partials kept by several processes combine at read time into
exactly what one process would have computed (the sketch, within its stated error). Mean
and standard deviation are derived when read. Hours and days are merges of their minutes.

Only numbers that keep this arithmetic finite enter it (``MAX_ABS_NUMBER``): one event's
``2**400`` or ``1e308`` would otherwise make a window's sums infinite (its mean and deviation
NaN, which JSON cannot carry), or raise while folding and cost the whole batch its statistics.
Such a value is skipped and counted (``beaconlake_stats_skipped_values_total``); its event
counts like any other.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

from beaconlake.units import DAY_MS, HOUR_MS, MINUTE_MS

GRAINS = {"minute": MINUTE_MS, "hour": HOUR_MS, "day": DAY_MS}
ALL_PATHS = ""  # the group that counts every path: the total for the event name
OTHER_PATHS = "(other)"  # paths past realtime.max_paths_per_window in one window
# Squared, and summed over more events than any window holds (1e108 of them), it stays finite.
MAX_ABS_NUMBER = 1e100


class WindowKey(NamedTuple):
    tenant: str
    name: str
    group: str  # page path, or ALL_PATHS
    minute: int  # window start, ms epoch, a multiple of MINUTE_MS


class Sketch(Protocol):
    def merge(self, other: Any) -> Any: ...


class Agg:
    """One window's (or one merged bucket's) aggregates."""

    __slots__ = ("count", "nums", "sketch")

    def __init__(self, sketch: Any, count: int = 0, nums: dict[str, list[float]] | None = None) -> None:
        self.count = count
        self.sketch = sketch
        self.nums: dict[str, list[float]] = nums if nums is not None else {}  # prop -> [n, sum, sumsq, min, max]

    def add_numbers(self, numbers: dict[str, float]) -> None:
        for prop, v in numbers.items():
            cur = self.nums.get(prop)
            if cur is None:
                self.nums[prop] = [1, v, v * v, v, v]
            else:
                cur[0] += 1
                cur[1] += v
                cur[2] += v * v
                cur[3] = min(cur[3], v)
                cur[4] = max(cur[4], v)

    def merge(self, other: Agg) -> Agg:
        self.count += other.count
        self.sketch = self.sketch.merge(other.sketch)
        self.merge_numbers(other.nums)
        return self

    def merge_numbers(self, nums: dict[str, list[float]]) -> None:
        for prop, o in nums.items():
            cur = self.nums.get(prop)
            if cur is None:
                self.nums[prop] = list(o)
            else:
                cur[0] += o[0]
                cur[1] += o[1]
                cur[2] += o[2]
                cur[3] = min(cur[3], o[3])
                cur[4] = max(cur[4], o[4])


def describe(nums: dict[str, list[float]]) -> dict[str, dict[str, float | None]]:
    out = {}
    for prop, (n, s, q, lo, hi) in sorted(nums.items()):
        if not n:
            continue
        mean = s / n
        # population variance from the mergeable sums; clamp the tiny negatives rounding makes
        var = max(0.0, q / n - mean * mean)
        stats = {"count": int(n), "sum": s, "min": lo, "max": hi, "mean": mean, "stddev": math.sqrt(var)}
        # a window folded before MAX_ABS_NUMBER may hold an infinite sum: JSON has no inf or NaN
        out[prop] = {k: v if k == "count" or math.isfinite(v) else None for k, v in stats.items()}
    return out


def numbers_of(props: Any, limit: int) -> tuple[dict[str, float], int]:
    """The top-level numeric properties of an event (booleans are not numbers), at most
    ``limit``, and how many numbers were skipped as out of range (not finite, or beyond
    ``MAX_ABS_NUMBER``). An int is compared as an int: converting ``2**2000`` to a float raises."""
    if not isinstance(props, dict):
        return {}, 0
    out: dict[str, float] = {}
    skipped = 0
    for k, v in props.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if -MAX_ABS_NUMBER <= v <= MAX_ABS_NUMBER:  # False for NaN and the infinities too
            out[k] = float(v)
            if len(out) >= limit:
                break
        else:
            skipped += 1
    return out, skipped


def bucket_of(minute: int, by: str) -> int:
    size = GRAINS[by]
    return minute - minute % size


def rollup(windows: dict[WindowKey, Agg], by: str, grouped: bool, new_sketch: Any) -> dict[tuple[int, str], Agg]:
    """Merge minute windows into ``by`` buckets, per path when ``grouped`` else the totals only."""
    out: dict[tuple[int, str], Agg] = {}
    for key, agg in windows.items():
        _, _, group, minute = key  # plain tuples on the hot path, WindowKey elsewhere: same hash
        if (group != ALL_PATHS) != grouped:
            continue
        b = (bucket_of(minute, by), group)
        cur = out.get(b)
        if cur is None:
            cur = out[b] = Agg(new_sketch())
        cur.merge(agg)
    return out
