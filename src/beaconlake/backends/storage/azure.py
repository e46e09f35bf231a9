"""Azure Blob Storage: objects through azure-storage-blob, scans through pyarrow's Azure filesystem.

Install with ``pip install 'beaconlake[azure]'``. Works with any Blob Storage account (flat or
hierarchical namespace) and with the Azurite emulator (``endpoint_url`` set to it).

Why two clients: ``put`` must be atomic (readers see the old object or the new one). A Put Blob
is, and so is a block list commit, which the SDK uses past its single-put size; pyarrow's
output stream is not (it creates an empty blob first, then appends blocks). pyarrow is what
scans read through, so readers (convert's footer checks, the Live view, engines' copies) get
the same filesystem object whatever the storage.
"""

from __future__ import annotations

import functools

import pyarrow.fs as pafs
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from beaconlake.backends.storage.base import Capabilities, ObjectInfo, Storage
from beaconlake.backends.storage.settings import AzureStorageSettings
from beaconlake.errors import ConfigError, StorageError


# Give up on one request after this long; the deliverer retries the segment (with backoff).
CONNECT_TIMEOUT_SECS = 10
READ_TIMEOUT_SECS = 60


def _authorities(settings: AzureStorageSettings) -> dict[str, str]:
    try:
        return settings.arrow_authorities()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class AzureStorage(Storage):
    capabilities = Capabilities(local_paths=False)

    def __init__(self, settings: AzureStorageSettings) -> None:
        self.settings = settings
        self.prefix = settings.prefix.strip("/")
        self.endpoint = (settings.endpoint_url or f"https://{settings.account_name}.blob.core.windows.net").rstrip("/")
        self._arrow_options = _authorities(settings)  # checked now: a bad endpoint is a config error at start-up
        credential = (AzureNamedKeyCredential(settings.account_name, settings.account_key) if settings.account_key
                      else AzureSasCredential(settings.sas_token or ""))
        self.container = ContainerClient(self.endpoint, settings.container, credential=credential,
                                         connection_timeout=CONNECT_TIMEOUT_SECS, read_timeout=READ_TIMEOUT_SECS)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, exc: Exception) -> StorageError:
        first = str(exc).strip().splitlines()
        return StorageError(f"{self.uri(key)}: {action} failed: {first[0] if first else type(exc).__name__}")

    def put(self, key: str, data: bytes) -> None:
        try:
            self.container.upload_blob(self._key(key), data, overwrite=True)
        except AzureError as exc:
            raise self._fail("put", key, exc) from exc

    def get(self, key: str) -> bytes:
        try:
            return self.container.download_blob(self._key(key)).readall()
        except ResourceNotFoundError:
            raise StorageError(f"no object {key!r} at {self.uri(key)}") from None
        except AzureError as exc:
            raise self._fail("get", key, exc) from exc

    def exists(self, key: str) -> bool:
        try:
            return self.container.get_blob_client(self._key(key)).exists()
        except AzureError as exc:
            raise self._fail("head", key, exc) from exc

    def list_info(self, prefix: str = "") -> list[ObjectInfo]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            out = [ObjectInfo(blob.name[strip:], blob.size, int(blob.last_modified.timestamp() * 1000))
                   for blob in self.container.list_blobs(name_starts_with=self._key(prefix))
                   if not blob.name.endswith("/")]  # a folder marker of a hierarchical namespace
        except AzureError as exc:
            raise self._fail("list", prefix, exc) from exc
        return sorted(out, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        try:
            self.container.delete_blob(self._key(key))
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise self._fail("delete", key, exc) from exc

    def uri(self, key: str) -> str:
        return f"{self.endpoint}/{self.settings.container}/{self._key(key)}"

    @functools.cached_property
    def _arrow(self) -> pafs.FileSystem:
        if not hasattr(pafs, "AzureFileSystem"):
            raise ConfigError("storage.type = 'azure' needs a pyarrow built with Azure support (the PyPI wheels "
                              "are): pip install 'beaconlake[azure]'")
        s = self.settings
        auth = {"account_key": s.account_key} if s.account_key else {"sas_token": s.sas_token}
        return pafs.AzureFileSystem(s.account_name, **auth, **self._arrow_options)

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        return self._arrow, f"{self.settings.container}/{self.prefix}".rstrip("/")
