"""One ``beaconlake up`` per mount namespace: nodes that share nothing but the services.

Every node is started by ``unshare --mount --propagation private``, which mounts a private tmpfs
over the same data path (``DATA_PATH`` of the test) before it execs ``beaconlake up``. All nodes
are configured with that one path, so a node that reached another's files through the disk would
collide with it at once; inside its namespace each sees only its own tmpfs, the test process sees
the empty folder underneath, and the tmpfs is gone when the node's last process exits (a machine
lost with its disk). The network is shared: nodes listen on their own localhost port and talk only
to the services (S3, Redis, PostgreSQL), which the test starts in its own namespace.

``kill()`` is kill -9 of the node's process group (``up`` and every worker, deliverer and
scheduler it started), so it dies as a machine does, without a chance to clean up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

TMPFS_BYTES = 512 * 1024 * 1024


@dataclass
class Node:
    name: str
    port: int
    config_path: Path
    data_path: Path  # the same path in every node's namespace, a private tmpfs in each
    log_path: Path
    ready_path: str = "/readyz"
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> Node:
        # mount, then exec: the pid Popen sees is `up` itself, in the namespace, leading its group
        script = 'mount -t tmpfs -o "size=$1" "beaconlake-$2" "$3" && exec "$4" -m beaconlake.cli up --config "$5"'
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
             str(TMPFS_BYTES), self.name, str(self.data_path), sys.executable, str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"node {self.name} not ready on {self.ready_path} after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def inside(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``command`` in this node's mount namespace (what the node's own processes see)."""
        if not self.alive:
            raise RuntimeError(f"node {self.name} is not running")
        return subprocess.run(["nsenter", "--target", str(self.proc.pid), "--mount", "--", *command],
                              capture_output=True, text=True, check=check, timeout=30)

    def files(self, pattern: str) -> list[str]:
        """Files under the node's data path matching a ``find -name`` pattern, as the node sees them."""
        out = self.inside("find", str(self.data_path), "-name", pattern, "-type", "f").stdout
        return sorted(line for line in out.splitlines() if line)

    def wait_delivered(self, timeout: float = 60.0) -> None:
        """Until the node's spool (in its own tmpfs) holds no segment: all it acknowledged is in the lake."""
        deadline = time.monotonic() + timeout
        while (left := self.files("*.seg")) and time.monotonic() < deadline:
            time.sleep(0.2)
        if left:
            raise TimeoutError(f"node {self.name}: spool not drained after {timeout}s: {left}\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: the clean shutdown (workers seal, the deliverer drains)."""
        if not self.alive:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self) -> None:
        """kill -9 of the node's whole process group."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the workers die with the group; wait for the last one
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
