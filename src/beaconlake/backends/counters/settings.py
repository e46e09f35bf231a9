"""``[counters]``: where the realtime statistics' windows live. ``type`` picks the backend (``LOADERS``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from beaconlake.sections import PositiveFloat, Section


class MemoryCountersSettings(Section, tag="memory", tag_field="type"):
    """Each process keeps its partials in memory and writes them under ``<data_dir>/realtime/``."""

    partials_interval_secs: PositiveFloat = 1.0


class RedisCountersSettings(Section, tag="redis", tag_field="type"):
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] = "bl"


CountersSettings = MemoryCountersSettings | RedisCountersSettings
