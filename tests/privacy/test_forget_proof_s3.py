"""The erasure proof with the lake on S3 (moto's server, the real S3 client code): the raw and
rejected files, the erasure records, the suppression list and the audit log all live in the
bucket, and neither the bucket nor the data folder (warehouse, stores, spool) holds a byte of the
person afterwards. The warehouse stays on local disk here."""

from __future__ import annotations

import time

import pytest
from privacy_search import bucket_files, hits, local_files
from privacy_world import make, visit
from support import moto_s3

from beaconlake.backends.storage import open_storage
from beaconlake.lake import layout
from beaconlake.privacy.forget import carry_out


def raw_rows(settings, people: set[str]) -> list[dict]:
    """Every raw row of ``people``, read from the bucket through the storage seam."""
    import pyarrow.parquet as pq

    storage = open_storage(settings.storage)
    rows = []
    for key in storage.list(layout.RAW):
        with storage.open_input(key) as f:
            rows += [r for r in pq.read_table(f).to_pylist() if r["anonymous_id"] in people]
    return sorted(rows, key=lambda r: r["event_id"])

pytestmark = pytest.mark.slow


def test_an_erased_person_is_nowhere_in_the_bucket_either(tmp_path):
    import boto3

    with moto_s3() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket="lake-bucket")
        storage = {"type": "s3", "bucket": "lake-bucket", "prefix": "lake", "endpoint_url": endpoint,
                   "access_key_id": "testing", "secret_access_key": "testing"}
        shop = make(tmp_path, {"storage": storage})
        try:
            needles = [*shop.p_ids, shop.marker]
            shop.post(visit(shop.p_anon1, int(time.time() * 1000) - 60_000, marker=shop.marker))
            shop.seal()
            everything = {**local_files(tmp_path / "data"), **bucket_files(s3, "lake-bucket")}
            before = {name for name, _ in hits(everything, needles)}
            assert any(n.startswith("s3://lake-bucket/lake/raw/") for n in before)
            assert any(n.startswith("s3://lake-bucket/lake/rejected/") for n in before)
            others = raw_rows(shop.settings, set(shop.others))
            assert len(others) >= 32

            r = shop.client.post("/v1/erasures", json={"person": shop.p_user}, headers=shop.admin())
            assert r.status_code == 202, r.text
            [carried] = carry_out(shop.settings).carried
            assert carried.ids_found == 3 and carried.removed["raw"] >= 9 and carried.removed["rejected"] == 1

            everything = {**local_files(tmp_path / "data"), **bucket_files(s3, "lake-bucket")}
            assert hits(everything, needles) == []
            keys = set(bucket_files(s3, "lake-bucket"))
            assert any("/audit/tenant=shop/" in k for k in keys) and any("/erasures/done/" in k for k in keys)
            assert not any("/erasures/pending/" in k for k in keys)
            assert raw_rows(shop.settings, set(shop.others)) == others  # every other row, unchanged
        finally:
            shop.close()
