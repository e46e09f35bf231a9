"""``beaconlake import`` on archives generated here: Segment JSON lines (gzip) and Snowplow
enriched TSV, each with a corrupt line; original times, dedupe against the lake, the summary."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import uuid
from pathlib import Path

import msgspec
import pytest
from support import read_lake, write_config

from beaconlake import cli, config
from beaconlake.ingest.imports import run as import_run
from beaconlake.ingest.imports.readers import ENRICHED_COLUMNS
from beaconlake.ingest.imports.run import Importer

DAY = "2025-06-0{d}T1{h}:00:00.000Z"


def segment_archive(path: Path, n: int = 40) -> list[dict]:
    messages = []
    for i in range(n):
        kind = ("track", "page", "identify")[i % 3]
        msg = {"type": kind, "anonymousId": f"anon-{i % 5}", "timestamp": DAY.format(d=1 + i % 3, h=i % 10),
               "receivedAt": "2025-06-04T00:00:00.000Z", "context": {"library": {"name": "analytics.js"}}}
        if kind == "track":
            msg["event"] = "Order Completed"
            msg["properties"] = {"total": i}
        if kind == "identify":
            msg["userId"] = f"user-{i % 5}"
        if i % 4:  # some archived messages carry no messageId
            msg["messageId"] = str(uuid.uuid4()) if i % 2 else f"ajs-{i}"
        messages.append(msg)
    lines = [json.dumps(m) for m in messages]
    lines.insert(7, '{"type": "track", "event": "Half')  # a corrupt line
    lines.insert(12, json.dumps({"type": "track", "event": "No one", "timestamp": DAY.format(d=1, h=1)}))  # no id at all
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return messages


def enriched_row(**values: str) -> str:
    row = dict.fromkeys(ENRICHED_COLUMNS, "")
    row.update(values)
    return "\t".join(row[c] for c in ENRICHED_COLUMNS)


def snowplow_archive(path: Path, app_id: str) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(4)]
    ue = json.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
                     "data": {"schema": "iglu:com.acme/video_play/jsonschema/1-0-0", "data": {"video": "v1"}}})
    rows = [
        enriched_row(app_id=app_id, event="page_view", event_id=ids[0], domain_userid="d-1", user_id="u-1",
                     page_url="https://shop.example/a", page_title="A", derived_tstamp="2025-05-20 10:00:00.000",
                     collector_tstamp="2025-05-20 10:00:01.000", useragent="Mozilla/5.0 (Windows NT 10.0) Chrome/120.0",
                     user_ipaddress="198.51.100.44", dvce_screenwidth="1920", dvce_screenheight="1080"),
        enriched_row(app_id=app_id, event="struct", event_id=ids[1], domain_userid="d-1", se_category="shop",
                     se_action="add-to-basket", se_value="2.5", derived_tstamp="2025-05-20 10:01:00.000"),
        enriched_row(app_id=app_id, event="unstruct", event_id=ids[2], domain_userid="d-2", unstruct_event=ue,
                     derived_tstamp="2025-05-21 09:00:00.000"),
        enriched_row(app_id="unclaimed-app", event="page_view", event_id=ids[3], domain_userid="d-3",
                     derived_tstamp="2025-05-21 09:00:00.000"),
        "not\tan\tenriched\tevent",
    ]
    path.write_text("\n".join(rows) + "\n")
    return ids


@pytest.fixture
def cfg(tmp_path) -> Path:
    return write_config(tmp_path, 18080, {"tenant": {"app_ids": ["shop-web"]}})


def test_segment_archive_imports_with_original_times_and_dedupes(tmp_path, cfg, capsys):
    archive = tmp_path / "segment-2025-06.json.gz"
    messages = segment_archive(archive)
    assert cli.main(["import", "--config", str(cfg), "--format", "segment", "--no-progress", str(archive)]) == 1
    out = capsys.readouterr().out
    assert f"read {len(messages) + 2}, imported {len(messages)}, duplicate 0, rejected 2" in out
    assert "rejected invalid_json: 1" in out and "rejected invalid_event: 1" in out
    data = tmp_path / "data"
    rows = read_lake(data)
    assert len(rows) == len(messages) and {r["source"] for r in rows} == {"segment"}
    # the original times, not the import's: every row on the archive's days
    assert {(r["year"], r["month"], r["day"]) for r in rows} == {(2025, 6, 1), (2025, 6, 2), (2025, 6, 3)}
    assert sorted(r["event_ts"] for r in rows) == sorted(
        config_ms(m["timestamp"]) for m in messages)
    rejected = read_lake(data, "rejected")
    errors = sorted(r["error"] for r in rejected)
    assert errors[0].startswith("segment-2025-06.json.gz:13") and "anonymousId or userId is required" in errors[0]
    assert errors[1].startswith("segment-2025-06.json.gz:8: not a JSON message")
    # again: everything is already there, nothing is added, not even the messages without an id
    assert cli.main(["import", "--config", str(cfg), "--format", "segment", "--no-progress", str(archive)]) == 1
    assert f"imported 0, duplicate {len(messages)}" in capsys.readouterr().out
    assert len(read_lake(data)) == len(messages)

    assert cli.main(["convert", "--config", str(cfg), "--no-progress"]) == 0
    capsys.readouterr()
    from beaconlake.convert.cli import load
    from beaconlake.convert.query import run_query
    from beaconlake.convert.run import open_store

    settings, sections = load(str(cfg))
    events = run_query(open_store(settings, sections), "SELECT anonymous_id, stitched_user, source FROM events",
                       settings.data_dir).to_pylist()
    assert len(events) == len(messages)
    assert {e["anonymous_id"]: e["stitched_user"] for e in events}["anon-1"] == "user-1"


def config_ms(iso: str) -> int:
    from beaconlake.ingest.protocols.common import iso_ms

    return iso_ms(iso, "t")


def test_snowplow_enriched_archive(tmp_path, cfg, capsys):
    archive = tmp_path / "enriched.tsv"
    ids = snowplow_archive(archive, "shop-web")
    assert cli.main(["import", "--config", str(cfg), "--format", "snowplow", "--no-progress", str(archive)]) == 1
    out = capsys.readouterr().out
    assert "read 5, imported 3, duplicate 0, rejected 2" in out
    rows = {r["event_id"]: r for r in read_lake(tmp_path / "data")}
    assert set(rows) == set(ids[:3])
    pv = rows[ids[0]]
    assert (pv["name"], pv["anonymous_id"], pv["user_id"], pv["url"], pv["source"]) == (
        "page_view", "d-1", "u-1", "https://shop.example/a", "snowplow")
    assert pv["event_ts"] == 1_747_735_200_000  # 2025-05-20 10:00:00 UTC, the derived time
    assert (pv["ip"], pv["ua_browser"], pv["is_bot"]) == ("198.51.100.0", "Chrome", False)
    assert msgspec.json.decode(pv["context"])["screen"] == "1920x1080"
    assert rows[ids[1]]["name"] == "add-to-basket" and rows[ids[2]]["name"] == "video_play"
    rejected = read_lake(tmp_path / "data", "rejected")
    assert sorted((r["tenant"], r["reason"]) for r in rejected) == [("_unknown", "invalid_event"), ("_unknown", "unknown_app_id")]


def test_bad_command_lines(tmp_path, cfg, capsys):
    assert cli.main(["import", "--config", str(cfg), "--format", "segment", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err
    assert cli.main(["import", "--config", str(cfg), "--format", "segment", "--tenant", "nope", str(cfg)]) == 2
    assert "--tenant 'nope' is not a tenant" in capsys.readouterr().err


def test_memory_stays_flat(tmp_path, cfg, monkeypatch):
    """Three chunks' worth of lines take about the memory of one."""
    monkeypatch.setattr(import_run, "CHUNK_EVENTS", 2_000)
    settings = config.load(cfg)

    def peak(n: int, name: str) -> int:
        path = tmp_path / name
        with gzip.open(path, "wt") as f:
            for i in range(n):
                f.write(json.dumps({"type": "track", "event": "Viewed", "anonymousId": f"a{i % 300}",
                                    "messageId": str(uuid.uuid4()), "timestamp": DAY.format(d=1, h=i % 10),
                                    "properties": {"pad": "x" * 200}}) + "\n")
        tracemalloc.start()
        summary = Importer(settings, "segment").run([path])
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert summary.imported == n
        return top

    one, six = peak(2_000, "one.json.gz"), peak(12_000, "six.json.gz")
    assert six < 1.6 * one, (one, six)
