"""The metric registry (``telemetry.HELP``) against the code and the operations page.

``/metrics`` renders only what ``HELP`` registers, so a counter incremented under a name
missing from it is counted and never shown; a name in ``HELP`` that nothing sets is a series
that always reads 0; and an operator reads what each one means in docs/operations.md.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import beaconlake.realtime  # noqa: F401  (registers the realtime stage's metrics)
from beaconlake.telemetry import HELP, Metrics

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "beaconlake"
METRIC = re.compile(r"beaconlake_[a-z0-9_]+")
REGISTRIES = {SRC / "telemetry.py", SRC / "realtime" / "__init__.py"}
OBSERVED = {"beaconlake_request_duration_seconds"}  # the histogram: Metrics.observe names no metric


def names_in_code() -> dict[str, set[Path]]:
    """Every string constant in src/ that is a metric name, with the files outside the registries
    that use it."""
    found: dict[str, set[Path]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and METRIC.fullmatch(node.value):
                found.setdefault(node.value, set())
                if path not in REGISTRIES:
                    found[node.value].add(path)
    return found


def test_every_metric_name_in_the_code_is_registered_and_every_registered_one_is_used():
    used = names_in_code()
    assert len(used) > 20, "the scan found too few metric names; did the source layout change?"
    unregistered = sorted(set(used) - set(HELP))
    assert not unregistered, f"metric names used in src/ but missing from telemetry.HELP (never rendered): {unregistered}"
    unused = sorted(n for n in HELP if not used.get(n) and n not in OBSERVED)
    assert not unused, f"telemetry.HELP entries that no code outside the registries sets: {unused}"


def test_every_registered_metric_renders_with_its_type():
    text = Metrics().render()
    for name, (kind, _) in HELP.items():
        assert f"# TYPE {name} {kind}\n" in text, name


def test_every_registered_metric_is_documented_in_the_operations_page():
    page = (ROOT / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"`(beaconlake_[a-z0-9_]+)`", page))
    missing = sorted(set(HELP) - documented)
    assert not missing, f"metrics missing from docs/operations.md: {missing}"
    unknown = sorted(documented - set(HELP) - {"beaconlake_last_ok_run_timestamp_seconds"})
    assert not unknown, f"docs/operations.md names metrics /metrics does not have: {unknown}"
