"""Secrets never reach logs: a section's repr redacts them (sections.py), and ``beaconlake up``
started from a config full of them logs none, start-up line, scheduler failures and all."""

from __future__ import annotations

import time

import boto3
from hypothesis import given, settings as hyp_settings, strategies as st
from support import free_port, moto_s3, start_collector

from beaconlake import config
from beaconlake.sections import REDACTED, redact_text

SECRET = "S3cretValue-0123456789abcdef"


def test_up_logs_no_secret_from_start_up_to_a_failed_run(tmp_path):
    admin, read_key, dsn_password = "AdminKey-" + "k" * 20, "ReadKeyZ-" + "q" * 20, "pg-Pass-w0rd-xyz"
    closed = free_port()
    with moto_s3() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AK",
                     aws_secret_access_key=SECRET).create_bucket(Bucket="lake-bucket")
        collector = start_collector(tmp_path, config_overrides={
            "storage": {"type": "s3", "bucket": "lake-bucket", "endpoint_url": endpoint, "access_key_id": "AK",
                        "secret_access_key": SECRET},
            "server": {"admin_key": admin},
            "tenant": {"read_key": read_key},
            # the scheduler's first run fails on this catalog, and logs why
            "catalog": {"type": "sql", "uri": f"postgresql+psycopg://bl:{dsn_password}@127.0.0.1:{closed}/iceberg"},
            "schedule": {"first_run_delay_secs": 0.2},
        })
        try:
            deadline = time.monotonic() + 60
            while "cannot open catalog.uri" not in collector.log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            collector.stop()
    text = collector.log_path.read_text()
    assert "secret_access_key='***'" in text  # the start-up line printed the storage, redacted
    assert "cannot open catalog.uri = 'postgresql+psycopg://bl:***@" in text  # the run failed, and said so
    for secret in (SECRET, admin, read_key, dsn_password):
        assert secret not in text


def test_settings_repr_and_str_redact_every_secret_field():
    s = config.parse({
        "storage": {"type": "azure", "account_name": "acct", "container": "lake", "account_key": SECRET + "az"},
        "catalog": {"type": "rest", "uri": "https://cat.example", "credential": "id:" + SECRET, "token": SECRET + "t",
                    "properties": {"s3.secret-access-key": SECRET + "p", "s3.endpoint": "http://minio:9000"}},
        "engine": {"type": "spark", "conf": {"spark.hadoop.fs.s3a.secret.key": SECRET + "sp"}},
        "server": {"admin_key": "A" * 20},
        "tenants": [{"id": "shop", "write_key": "w" * 20, "read_key": "R" * 20, "admin_key": "T" * 20}],
    }, "/tmp", environ={})
    for text in (repr(s), str(s), f"{s}", "%s" % (s,)):
        assert SECRET not in text and "R" * 20 not in text and "A" * 20 not in text and "T" * 20 not in text
        assert "http://minio:9000" in text and "w" * 20 in text  # what is not secret stays readable


@hyp_settings(max_examples=60, deadline=None)
@given(user=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
       password=st.text(st.characters(codec="ascii", categories=("L", "N", "P", "S"), exclude_characters="@/ '\\"),
                        min_size=1, max_size=30))
def test_a_password_in_a_url_or_dsn_is_never_printed(user, password):
    url = f"postgresql+psycopg://{user}:{password}@db.internal:5432/iceberg"
    redacted = redact_text(url)
    assert redacted == f"postgresql+psycopg://{user}:{REDACTED}@db.internal:5432/iceberg"
    dsn = f"host=db.internal password={password} user={user}"
    assert redact_text(dsn) == f"host=db.internal password={REDACTED} user={user}"
    s = config.parse({"catalog": {"type": "sql", "uri": url}}, "/tmp", environ={})
    assert f":{password}@" not in repr(s)
