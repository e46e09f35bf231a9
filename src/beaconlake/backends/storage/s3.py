"""S3 (or any S3-compatible store) storage: objects through boto3, scans through pyarrow's S3 filesystem.

Install with ``pip install 'beaconlake[s3]'``."""

from __future__ import annotations

import functools
from typing import Any

import boto3
import pyarrow.fs as pafs
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from beaconlake.backends.storage.base import Capabilities, ObjectInfo, Storage
from beaconlake.backends.storage.settings import S3StorageSettings
from beaconlake.errors import StorageError


class S3Storage(Storage):
    capabilities = Capabilities(local_paths=False)

    def __init__(self, settings: S3StorageSettings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix.strip("/")
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            # Lake delivery retries a failed segment for ever, with its own backoff and counters:
            # a request may be tried twice here, and never wait longer than timeout_secs.
            config=Config(connect_timeout=settings.timeout_secs, read_timeout=settings.timeout_secs,
                          retries={"mode": "standard", "total_max_attempts": 2},
                          s3={"addressing_style": "path" if settings.path_style else "virtual"}),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, exc: Exception) -> StorageError:
        return StorageError(f"s3://{self.bucket}/{self._key(key)}: {action} failed: {exc}")

    def put(self, key: str, data: bytes) -> None:
        # A single PUT is atomic in S3: readers see the old object or the new one, never a part.
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("put", key, exc) from exc

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("get", key, exc) from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._fail("head", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("head", key, exc) from exc

    def list_info(self, prefix: str = "") -> list[ObjectInfo]:
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        out: list[ObjectInfo] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                out.extend(ObjectInfo(obj["Key"][strip:], obj["Size"], int(obj["LastModified"].timestamp() * 1000))
                           for obj in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("list", prefix, exc) from exc
        return sorted(out, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("delete", key, exc) from exc

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    @functools.cached_property
    def _arrow(self) -> pafs.FileSystem:
        s = self.settings
        return pafs.S3FileSystem(
            access_key=s.access_key_id,
            secret_key=s.secret_access_key,
            region=s.region,
            endpoint_override=s.endpoint_url,
            scheme="http" if (s.endpoint_url or "").startswith("http://") else "https",
            force_virtual_addressing=not s.path_style,
        )

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        return self._arrow, f"{self.bucket}/{self.prefix}".rstrip("/")
