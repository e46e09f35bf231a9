"""``[storage]``: where the lake's objects live. ``type`` picks the backend (``LOADERS``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from beaconlake.sections import Section, resolve


class LocalStorageSettings(Section, tag="local", tag_field="type"):
    # Empty means "<data_dir>/lake".
    root: str = ""

    def resolve_paths(self, base_dir: str, data_dir: str) -> None:
        self.root = resolve(base_dir, self.root or str(Path(data_dir) / "lake"))


class S3StorageSettings(Section, tag="s3", tag_field="type"):
    bucket: Annotated[str, msgspec.Meta(min_length=3, max_length=63)]
    prefix: str = "lake"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None


StorageSettings = LocalStorageSettings | S3StorageSettings
