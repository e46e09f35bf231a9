"""Logs are JSON lines when stderr is not a terminal: one object per record, with the fields a
log collector needs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from support import free_port, write_config

from beaconlake.logs import RepeatedFailures


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


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["stats", "seal", "pressure"]), st.floats(0, 30, allow_nan=False)),
                max_size=60))
def test_a_repeating_failure_is_logged_once_then_summed_never_lost(failures):
    """Per kind: the first failure with its traceback, then at most a line per ``every`` seconds,
    and the counts in the lines plus what is not yet logged add up to every failure."""
    clock = [0.0]
    lines: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record)

    logger = logging.getLogger("test.repeated")
    logger.propagate = False
    logger.handlers[:] = [Keep()]
    failed = RepeatedFailures(logger, every=10.0)
    failed_at = {}
    with mock.patch("beaconlake.logs.time.monotonic", lambda: clock[0]):
        for kind, step in failures:
            clock[0] += step
            failed_at.setdefault(kind, []).append(clock[0])
            failed.failed(kind, RuntimeError(f"{kind} down"), f"{kind} failed first")
    for kind, times in failed_at.items():
        mine = [r for r in lines if r.getMessage().startswith(kind)]
        assert mine[0].getMessage() == f"{kind} failed first" and mine[0].exc_info is not None
        summed = [int(r.getMessage().split(" failed ")[1].split(" ")[0]) for r in mine[1:]]
        assert all(r.exc_info is None and f"RuntimeError: {kind} down" in r.getMessage() for r in mine[1:])
        assert 1 + sum(summed) + failed._unlogged[kind] == len(times)
        assert len(mine) <= 1 + (times[-1] - times[0]) / 10.0 + 1e-9
