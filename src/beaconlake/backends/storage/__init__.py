"""Storage backends: ``storage.type`` in the config picks one; backends import lazily."""

from __future__ import annotations

from beaconlake.backends.storage.base import Capabilities, ObjectInfo, Storage
from beaconlake.config import AzureStorageSettings, LocalStorageSettings, S3StorageSettings, StorageSettings


def open_storage(settings: StorageSettings) -> Storage:
    if isinstance(settings, LocalStorageSettings):
        from beaconlake.backends.storage.local import LocalStorage

        return LocalStorage(settings.root)
    if isinstance(settings, S3StorageSettings):
        from beaconlake.backends.storage.s3 import S3Storage

        return S3Storage(settings)
    if isinstance(settings, AzureStorageSettings):
        from beaconlake.backends.storage.azure import AzureStorage

        return AzureStorage(settings)
    raise TypeError(f"unknown storage settings {type(settings).__name__}")


__all__ = ["Capabilities", "ObjectInfo", "Storage", "open_storage"]
