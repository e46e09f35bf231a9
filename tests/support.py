"""Test support: a real ``beaconlake up`` in a subprocess, and a reader for the raw lake."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow.dataset as ds
import pytest

from beaconlake.starter import write_starter


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if v is None:
        raise ValueError("TOML has no null; leave the key out")
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def write_config(folder: Path, port: int, overrides: dict[str, Any] | None = None) -> Path:
    """A starter config with test-friendly timings; ``overrides`` merges into sections, and
    ``{"tenant": {...}}`` replaces keys of the single tenant "demo"."""
    path = write_starter(folder, port=port, force=True)
    raw = tomllib.loads(path.read_text())
    raw["spool"]["flush_interval_secs"] = 0.3
    raw.setdefault("delivery", {})["poll_interval_secs"] = 0.1
    raw["spool"]["min_free_disk_bytes"] = 0
    for section, values in (overrides or {}).items():
        if section == "tenant":
            raw["tenants"][0].update(values)
        elif isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    lines = [f"{k} = {_toml_value(v)}" for k, v in raw.items() if not isinstance(v, (dict, list))]
    for k, v in raw.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None]
    for t in raw["tenants"]:
        lines.append("[[tenants]]")
        lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in t.items() if vv is not None]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Collector:
    folder: Path
    port: int
    config_path: Path
    write_key: str
    read_key: str
    log_path: Path
    proc: subprocess.Popen | None = None
    extra_args: list[str] = field(default_factory=list)
    preexec_fn: Callable[[], None] | None = None  # run in the child before `up` starts (e.g. setrlimit)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def start(self, timeout: float = 30.0, ready_path: str = "/readyz") -> Collector:
        """Start ``beaconlake up`` and wait for ``ready_path`` to answer 200 (``/healthz`` for a
        collector that is meant to shed load from the start, and so is never ready)."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "beaconlake.cli", "up", "--config", str(self.config_path), *self.extra_args],
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so kill() reaches the workers and the deliverer too
            preexec_fn=self.preexec_fn,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"beaconlake up exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}{ready_path}", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"collector not ready after {timeout}s:\n{self.log_path.read_text()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, the clean shutdown: workers seal, the deliverer drains."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        _reap_group(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL to every process of the collector: a crash, with no chance to clean up."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        _reap_group(self.proc.pid)

    def wait_delivered(self, timeout: float = 20.0) -> None:
        """Wait until the spool holds no segment (everything acknowledged is in the lake)."""
        deadline = time.monotonic() + timeout
        spool = self.data_dir / "spool"
        while time.monotonic() < deadline:
            if not any(spool.glob("*/*.seg")):
                return
            time.sleep(0.1)
        raise TimeoutError(f"spool not drained after {timeout}s: {sorted(p.name for p in spool.glob('*/*.seg'))}")


def _reap_group(pgid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start_collector(
    tmp_path: Path,
    *,
    port: int | None = None,
    config_overrides: dict[str, Any] | None = None,
    args: list[str] | None = None,
    ready_path: str = "/readyz",
    preexec_fn: Callable[[], None] | None = None,
) -> Collector:
    port = port or free_port()
    config_path = write_config(tmp_path, port, config_overrides)
    raw = tomllib.loads(config_path.read_text())
    tenant = raw["tenants"][0]
    collector = Collector(
        tmp_path, port, config_path, tenant["write_key"], tenant["read_key"], tmp_path / "collector.log",
        extra_args=args or [], preexec_fn=preexec_fn,
    )
    return collector.start(ready_path=ready_path)


def read_lake(data_dir: Path, area: str = "raw") -> list[dict]:
    """Every row of the raw (or rejected) lake, with the partition columns."""
    root = Path(data_dir) / "lake" / area
    if not root.is_dir() or not any(root.rglob("*.parquet")):
        return []
    return ds.dataset(root, format="parquet", partitioning="hive").to_table().to_pylist()


@contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free local port, for the real S3 client code; yields its endpoint URL."""
    moto_server = pytest.importorskip("moto.server", reason="S3 tests need moto[server]: pip install -e '.[test]'")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # moto keeps its buckets in this process's memory, shared by every server it starts: an
        # earlier test's objects would still be there under the same bucket name
        httpx.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
        yield endpoint
    finally:
        server.stop()


# The Azurite version `make node-deps` installs (scripts/node-deps), and the well-known account
# every Azurite serves: its key is public, published with the emulator.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_AZURITE_INSTALLED = Path(__file__).resolve().parent.parent / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"


@contextmanager
def azurite() -> Iterator[str]:
    """Azurite's Blob service (the Azure Storage emulator, from npm) on a free local port, in
    memory; yields its endpoint URL. Skips, saying how to get it, when it is not installed."""
    pytest.importorskip("azure.storage.blob", reason="Azure tests need azure-storage-blob: pip install -e '.[test]'")
    import shutil

    exe = os.environ.get("AZURITE_BLOB") or (str(_AZURITE_INSTALLED) if _AZURITE_INSTALLED.exists() else None) \
        or shutil.which("azurite-blob")
    if exe is None:
        pytest.skip("Azure tests need the Azurite emulator: `make node-deps` installs it (Node.js 18+ and npm), "
                    "or set AZURITE_BLOB to an azurite-blob executable")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence", "--disableTelemetry",
         "--skipApiVersionCheck", "--silent"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                    raise RuntimeError(f"Azurite did not start on port {port}: {out}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
