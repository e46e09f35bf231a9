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


class AzureStorageSettings(Section, tag="azure", tag_field="type"):
    """Azure Blob Storage (backends/storage/azure.py). Authenticates with the account's key or a
    SAS token (exactly one; both are secrets: set them through the environment)."""

    account_name: Annotated[str, msgspec.Meta(min_length=3, max_length=24, pattern=r"^[a-z0-9]+$")]
    container: Annotated[str, msgspec.Meta(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")]
    prefix: str = "lake"
    account_key: str | None = None
    sas_token: str | None = None
    # The Blob service URL; empty means https://<account_name>.blob.core.windows.net. Set it for
    # another Azure cloud or the Azurite emulator (http://127.0.0.1:10000/<account_name>).
    endpoint_url: str | None = None

    def __post_init__(self) -> None:
        if (self.account_key is None) == (self.sas_token is None):
            raise ValueError("storage.type = 'azure' needs exactly one of storage.account_key and storage.sas_token "
                             f"(got {'both' if self.account_key else 'neither'}); set one, e.g. "
                             "BEACONLAKE__STORAGE__ACCOUNT_KEY in the environment")
        if self.endpoint_url is not None and not self.endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"storage.endpoint_url = {self.endpoint_url!r}: the Blob service URL starts with "
                             "http:// or https://")


StorageSettings = LocalStorageSettings | S3StorageSettings | AzureStorageSettings
