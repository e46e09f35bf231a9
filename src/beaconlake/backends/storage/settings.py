"""``[storage]``: where the lake's objects live. ``type`` picks the backend (``LOADERS``).

Each section also says how other readers reach the same store (``fileio_properties``: pyiceberg's
FileIO properties for a warehouse URI on it), so the Iceberg warehouse and Spark use the endpoint,
region, credentials and addressing the lake uses, from one place.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from beaconlake.sections import Section, resolve

# URI schemes of an S3-compatible store (Hadoop's s3a and s3n name the same objects as s3).
S3_SCHEMES = ("s3", "s3a", "s3n")
# pyiceberg's pyarrow FileIO reads abfs://<container>/<path> (and abfss, wasb, wasbs).
AZURE_SCHEMES = ("abfs", "abfss", "wasb", "wasbs")


def uri_scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


class LocalStorageSettings(Section, tag="local", tag_field="type"):
    # Empty means "<data_dir>/lake".
    root: str = ""

    def resolve_paths(self, base_dir: str, data_dir: str) -> None:
        self.root = resolve(base_dir, self.root or str(Path(data_dir) / "lake"))

    def fileio_properties(self, uri: str) -> dict[str, str]:
        return {}


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
    # How a bucket is named in requests: "path" (endpoint/bucket/key: MinIO, Ceph, moto, most
    # self-hosted stores), "virtual" (bucket.endpoint/key: AWS, R2) or "auto" (path with an
    # endpoint_url, virtual without). Applies to the lake, the Iceberg warehouse and Spark's S3A.
    addressing_style: Literal["auto", "path", "virtual"] = "auto"

    def __post_init__(self) -> None:
        if self.endpoint_url is not None and not self.endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"storage.endpoint_url = {self.endpoint_url!r}: an S3 endpoint URL starts with "
                             "http:// or https://, e.g. http://minio:9000")

    @property
    def path_style(self) -> bool:
        return self.addressing_style == "path" or (self.addressing_style == "auto" and self.endpoint_url is not None)

    def fileio_properties(self, uri: str) -> dict[str, str]:
        """pyiceberg FileIO properties that reach this store, when ``uri`` (a warehouse) is on an
        S3-compatible store; {} otherwise. Any bucket: one endpoint serves them all. The region
        is always given, so pyiceberg never asks AWS where a bucket lives (what made a
        self-hosted endpoint fail resolving <bucket>.s3.<region>.amazonaws.com)."""
        if uri_scheme(uri) not in S3_SCHEMES:
            return {}
        props = {
            "s3.region": self.region,
            "s3.force-virtual-addressing": "false" if self.path_style else "true",
            "s3.connect-timeout": f"{self.timeout_secs:g}",
            "s3.request-timeout": f"{self.timeout_secs:g}",
        }
        if self.endpoint_url:
            props["s3.endpoint"] = self.endpoint_url
        if self.access_key_id:
            props["s3.access-key-id"] = self.access_key_id
        if self.secret_access_key:
            props["s3.secret-access-key"] = self.secret_access_key
        return props


class AzureStorageSettings(Section, tag="azure", tag_field="type"):
    """Azure Blob Storage (backends/storage/azure.py). Authenticates with the account's key or a
    SAS token (exactly one; both are secrets: set them through the environment)."""

    account_name: Annotated[str, msgspec.Meta(min_length=3, max_length=24, pattern=r"^[a-z0-9]+\Z")]
    container: Annotated[str, msgspec.Meta(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9-]*[a-z0-9]\Z")]
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

    def arrow_authorities(self) -> dict[str, str]:
        """pyarrow's blob/dfs authority and scheme for ``endpoint_url``: an emulator's host:port as
        it is, or a cloud's host suffix (``.blob.core.<cloud>``) after the account name."""
        if self.endpoint_url is None:
            return {}
        url = urlsplit(self.endpoint_url)
        host = url.hostname or ""
        try:
            local = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = False
        if local:  # Azurite: http://127.0.0.1:10000/<account>
            blob = dfs = url.netloc
        elif host.startswith(f"{self.account_name}.blob."):
            blob = url.netloc[len(self.account_name):]
            dfs = blob.replace(".blob.", ".dfs.", 1)
        else:
            raise ValueError(
                f"storage.endpoint_url = {self.endpoint_url!r}: expected https://{self.account_name}.blob.<cloud "
                "suffix> or a local emulator (http://127.0.0.1:10000/<account>)")
        return {"blob_storage_authority": blob, "dfs_storage_authority": dfs,
                "blob_storage_scheme": url.scheme, "dfs_storage_scheme": url.scheme}

    def fileio_properties(self, uri: str) -> dict[str, str]:
        """pyiceberg's ``adls.*`` properties for a warehouse on this account (``abfs://<container>/<path>``:
        pyiceberg's pyarrow FileIO takes the container from the URI's host)."""
        if uri_scheme(uri) not in AZURE_SCHEMES:
            return {}
        # pyiceberg prefers fsspec (adlfs, not a dependency) for abfs://: pyarrow's Azure
        # filesystem is the one the lake already reads through
        props = {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO", "adls.account-name": self.account_name}
        if self.account_key:
            props["adls.account-key"] = self.account_key
        if self.sas_token:
            props["adls.sas-token"] = self.sas_token
        props.update({f"adls.{k.replace('_', '-')}": v for k, v in self.arrow_authorities().items()})
        return props


StorageSettings = LocalStorageSettings | S3StorageSettings | AzureStorageSettings
