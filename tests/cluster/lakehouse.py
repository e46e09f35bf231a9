"""The shared tables as an outside reader sees them: pyiceberg on the PostgreSQL SQL catalog and
the S3 warehouse, opened from the test process with pyiceberg's own catalog (no beaconlake code),
as Spark or Trino would open them. Also what is in the warehouse bucket but in no snapshot."""

from __future__ import annotations

from dataclasses import dataclass

import boto3

NAMESPACE = "beaconlake"
# moto takes any credentials; a secret no log line could hold by chance, so a test can look for it
S3_KEYS = {"access_key_id": "cluster-test", "secret_access_key": "s3-secret-Qx7vT2mZ9kLw", "region": "us-east-1"}


@dataclass
class Warehouse:
    endpoint: str  # the S3 endpoint (moto)
    bucket: str
    prefix: str
    catalog_uri: str  # SQLAlchemy URL of the SQL catalog in PostgreSQL

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def s3(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=S3_KEYS["region"],
                            aws_access_key_id=S3_KEYS["access_key_id"],
                            aws_secret_access_key=S3_KEYS["secret_access_key"])

    def catalog(self):
        from pyiceberg.catalog import load_catalog

        return load_catalog("beaconlake", **{
            "type": "sql", "uri": self.catalog_uri, "warehouse": self.uri,
            "s3.endpoint": self.endpoint, "s3.access-key-id": S3_KEYS["access_key_id"],
            "s3.secret-access-key": S3_KEYS["secret_access_key"], "s3.region": S3_KEYS["region"],
            "s3.force-virtual-addressing": "false",
        })

    def table(self, name: str):
        return self.catalog().load_table(f"{NAMESPACE}.{name}")

    def rows(self, name: str, columns: tuple[str, ...] = ("*",)) -> list[dict]:
        return self.table(name).scan(selected_fields=columns).to_arrow().to_pylist()

    def listed(self, location: str) -> set[str]:
        """Every object under a table's ``s3://bucket/path`` location, as s3:// URIs."""
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        found: set[str] = set()
        for page in self.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
            found.update(f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", []))
        return found

    def unreferenced(self, name: str) -> set[str]:
        """Files under the table's location that neither a retained snapshot nor the metadata log
        needs (``maintain.reachable``: what expiry keeps): a duplicate run's or a dead run's."""
        from beaconlake.convert.maintain import reachable

        table = self.table(name)
        return self.listed(table.location()) - {_s3(u) for u in reachable(table)}


def _s3(uri: str) -> str:
    return "s3://" + uri.split("://", 1)[1] if "://" in uri else uri
