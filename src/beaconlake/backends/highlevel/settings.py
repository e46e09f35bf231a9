"""``[highlevel]``: where high-level events are indexed for search. ``type`` picks the backend (``LOADERS``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from beaconlake.sections import Section, check_range, resolve


class SqliteHighLevelSettings(Section, tag="sqlite", tag_field="type"):
    # Empty means "<data_dir>/highlevel.db".
    path: str = ""

    def resolve_paths(self, base_dir: str, data_dir: str) -> None:
        self.path = resolve(base_dir, self.path or str(Path(data_dir) / "highlevel.db"))


class PostgresHighLevelSettings(Section, tag="postgres", tag_field="type"):
    dsn: Annotated[str, msgspec.Meta(min_length=1)]
    # A call the server has not answered within this is given up (a hung server, a black-holed
    # network): the deliverer's pass goes on without indexing, a read answers 503.
    timeout_secs: float = 30.0

    def __post_init__(self) -> None:
        check_range("highlevel.timeout_secs", self.timeout_secs, 0.1, 3600, "seconds")


HighLevelSettings = SqliteHighLevelSettings | PostgresHighLevelSettings
