"""Query parameters of the read API: each bad value becomes a 400 naming the value and what is allowed."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from beaconlake.types import NAME_MAX, NAME_PATTERN


class BadParam(Exception):
    def __init__(self, param: str, error: str) -> None:
        super().__init__(error)
        self.param, self.error = param, error


_NAME = re.compile(NAME_PATTERN)


def name(value: str | None, param: str = "name", required: bool = True) -> str | None:
    if value is None or value == "":
        if required:
            raise BadParam(param, f"{param} is required, e.g. ?{param}=page_view")
        return None
    if len(value) > NAME_MAX or not _NAME.match(value):
        raise BadParam(param, f"{param}={value[:80]!r} is not an event name: up to {NAME_MAX} characters of [a-z0-9_.:-]")
    return value


def when(value: str | None, param: str, default: int | None) -> int | None:
    """ms since the epoch, or ISO 8601 (UTC when it names no zone)."""
    if value is None or value == "":
        return default
    if value.isdigit():
        ms = int(value)
    else:
        try:
            d = datetime.fromisoformat(value)  # 3.11 reads a trailing Z
        except ValueError:
            raise BadParam(param, f"{param}={value[:80]!r} is not a time; give ms since the epoch or ISO 8601, "
                                  "e.g. 2026-11-27T08:00:00Z") from None
        ms = int((d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp() * 1000)
    if not 0 <= ms <= 4_102_444_800_000:
        raise BadParam(param, f"{param}={value!r} is out of range: between 1970 and 2100")
    return ms


def choice(value: str | None, param: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    if value is None or value == "":
        return default
    if value not in allowed:
        raise BadParam(param, f"{param}={value[:80]!r} is not allowed; use one of {', '.join(allowed)}")
    return value


def integer(value: str | None, param: str, lo: int, hi: int, default: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or not lo <= int(value) <= hi:
        raise BadParam(param, f"{param}={value[:80]!r} must be a whole number from {lo} to {hi}")
    return int(value)


def now_ms() -> int:
    return time.time_ns() // 1_000_000
