"""Time units every stage counts in: milliseconds since the Unix epoch, UTC days.

One home for the constants and the few conversions, so a day boundary is computed the same
way by delivery (which partitions by it), convert (which rewrites by it) and every reader."""

from __future__ import annotations

import time
from datetime import UTC, datetime

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def day_of(ms: int) -> tuple[int, int, int]:
    """(year, month, day) of the UTC day ``ms`` falls in."""
    d = datetime.fromtimestamp(ms / 1000, UTC)
    return d.year, d.month, d.day


def iso(ms: int) -> str:
    """``ms`` as UTC ISO 8601 with milliseconds, e.g. ``2026-11-27T10:00:00.000Z``."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
