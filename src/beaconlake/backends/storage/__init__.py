"""Storage backends: ``storage.type`` in the config picks one from ``LOADERS``; each imports lazily."""

from __future__ import annotations

from beaconlake.backends.loader import Loader, backend_for
from beaconlake.backends.storage.base import Capabilities, ObjectInfo, Storage
from beaconlake.backends.storage.settings import StorageSettings

LOADERS: dict[str, Loader] = {
    "local": ("beaconlake.backends.storage.local", "LocalStorage", None),
    "s3": ("beaconlake.backends.storage.s3", "S3Storage", "s3"),
    "azure": ("beaconlake.backends.storage.azure", "AzureStorage", "azure"),
}


def open_storage(settings: StorageSettings) -> Storage:
    """The storage ``settings`` (the ``[storage]`` section, paths resolved) configures."""
    return backend_for("storage", settings, LOADERS).from_settings(settings)


__all__ = ["LOADERS", "Capabilities", "ObjectInfo", "Storage", "open_storage"]
