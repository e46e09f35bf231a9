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
    # Connect and read timeout of each request. boto3's own is 60 s, retried: a hung S3 held
    # lake delivery for minutes before a failure was counted; now at most 2 x this.
    timeout_secs: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0


StorageSettings = LocalStorageSettings | S3StorageSettings
