"""Logs are JSON lines when stderr is not a terminal: one object per record, with the fields a
log collector needs."""

from __future__ import annotations

import json
import subprocess
import sys

from support import free_port, write_config


def test_logs_are_json_lines_when_not_on_a_terminal(tmp_path):
    cfg = write_config(tmp_path, free_port())
    r = subprocess.run([sys.executable, "-m", "beaconlake.cli", "convert", "--config", str(cfg), "--no-progress"],
                       check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stderr.splitlines() if line.strip()]
    assert lines, r.stderr
    for rec in lines:
        assert {"ts", "level", "logger", "msg", "pid"} <= rec.keys() and rec["ts"].endswith("Z")
    assert any(rec["logger"] == "beaconlake.convert.run" and "convert run" in rec["msg"] for rec in lines)
