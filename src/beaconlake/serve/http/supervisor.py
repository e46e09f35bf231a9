"""The server's parent process: one listening socket, N worker processes sharing it.

Invariants:

- **The socket outlives the workers.** The supervisor binds and listens once and keeps its
  copy open; workers inherit it. A connection that arrives while a worker is being restarted
  waits in the accept backlog for another worker (or the new one): it is never refused.
- **A dead worker comes back.** A worker that exits while the server runs (a crash, kill -9,
  the OOM killer) is restarted at once; one that dies before it is ready is restarted with a
  growing delay, and if no worker has ever become ready after ``MAX_START_FAILURES`` tries the
  server gives up (exit 1) rather than loop forever on a broken install.
- **Clean stop.** SIGTERM or SIGINT: every worker is told to stop (stop accepting, finish
  requests in flight within ``server.shutdown_timeout_secs``, run the app's shutdown hook); one
  still alive ``EXIT_GRACE_SECS`` after that is killed. Then ``run`` returns.
- **File descriptors.** RLIMIT_NOFILE's soft limit is raised to the hard limit before the
  workers start (they inherit it), and each worker's connection cap stays ``RESERVED_FDS``
  below it, so connections can never starve the spool, the logs or the stores of descriptors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from beaconlake.config import Settings
from beaconlake.errors import BeaconlakeError
from beaconlake.serve.http import balance
from beaconlake.serve.http.server import BACKLOG
from beaconlake.telemetry import Metrics

log = logging.getLogger(__name__)

RESERVED_FDS = 256  # spool segments, logs, SQLite, metrics snapshots, the socket itself
MAX_START_FAILURES = 5
EXIT_GRACE_SECS = 15.0  # after shutdown_timeout_secs: the app's shutdown hook (sealing the spool)
POLL_SECS = 0.1


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(configured: int, open_files: int) -> int:
    """The per-worker connection cap that fits under the open-files limit."""
    room = open_files - RESERVED_FDS
    if configured <= room:
        return configured
    cap = max(room, open_files // 2, 1)
    log.warning("server.max_connections_per_worker=%d does not fit under the open-files limit (%d, minus %d "
                "reserved); using %d. Raise the hard limit (ulimit -Hn, LimitNOFILE=) to allow more.",
                configured, open_files, RESERVED_FDS, cap)
    return cap


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        raise BeaconlakeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; is another server on that "
                              "port? Choose another with --port / server.port") from None


@dataclass
class _Worker:
    proc: subprocess.Popen
    ready_fd: int
    slot: int
    started: float = field(default_factory=time.monotonic)
    ready: bool = False


class Supervisor:
    def __init__(self, settings: Settings, app_factory: str, log_level: str = "INFO") -> None:
        self.settings = settings
        self.app_factory = app_factory
        self.log_level = log_level
        self.metrics = Metrics(settings.run_path, role="server")
        self.workers: list[_Worker] = []
        self.stopping = False
        self.ever_ready = False
        self.start_failures = 0
        self.next_start = 0.0
        self._payload = pickle.dumps(settings)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit status."""
        s = self.settings.server
        cap = connection_cap(s.max_connections_per_worker, raise_open_files_limit())
        self.sock = listen(s.host, s.port)
        self.shares_fd = balance.Shares.create(s.workers)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for _ in range(s.workers):
                self._spawn(cap)
            status = self._watch(cap)
        finally:
            self._stop_workers()
            self.sock.close()
            os.close(self.shares_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _on_signal(self, signum: int, frame: object) -> None:
        if not self.stopping:
            log.info("%s: stopping the server (requests in flight finish first)", signal.Signals(signum).name)
        self.stopping = True

    # -- workers ----------------------------------------------------------------------------

    def _spawn(self, cap: int) -> None:
        fd = self.sock.fileno()
        slot = min(set(range(self.settings.server.workers)) - {w.slot for w in self.workers})
        ready_r, ready_w = os.pipe()
        os.set_blocking(ready_r, False)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "beaconlake.serve.http.worker", "--fd", str(fd), "--ready-fd", str(ready_w),
                 "--app", self.app_factory, "--max-connections", str(cap), "--log-level", self.log_level,
                 "--shares-fd", str(self.shares_fd), "--slot", str(slot)],
                stdin=subprocess.PIPE, pass_fds=(fd, ready_w, self.shares_fd),
            )
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)
        # in a thread: a pipe holds only 64 KiB, and the worker reads it once its imports are done
        threading.Thread(target=_write_and_close, args=(proc.stdin, self._payload), daemon=True).start()
        self.workers.append(_Worker(proc, ready_r, slot))

    def _watch(self, cap: int) -> int:
        while not self.stopping:
            fds = [w.ready_fd for w in self.workers if not w.ready]
            if fds:
                with contextlib.suppress(InterruptedError):
                    select.select(fds, [], [], POLL_SECS)
            else:
                time.sleep(POLL_SECS)
            for w in self.workers:
                if not w.ready:
                    self._check_ready(w)
            for w in [w for w in self.workers if w.proc.poll() is not None]:
                if self.stopping:
                    break
                self.workers.remove(w)
                os.close(w.ready_fd)
                self._died(w)
                if self.start_failures >= MAX_START_FAILURES and not self.ever_ready:
                    log.error("no server worker could start (%d tries); giving up", self.start_failures)
                    return 1
            missing = self.settings.server.workers - len(self.workers)
            if missing > 0 and not self.stopping and time.monotonic() >= self.next_start:
                for _ in range(missing):
                    try:
                        self._spawn(cap)
                    except OSError as exc:  # out of processes, memory or descriptors, for now
                        self._retry_later(f"cannot start a server worker: {exc}")
                        break
        return 0

    def _check_ready(self, w: _Worker) -> None:
        try:
            got = os.read(w.ready_fd, 1)
        except BlockingIOError:
            return
        if got:
            w.ready = self.ever_ready = True
            self.start_failures = 0
            log.info("server worker %d ready", w.proc.pid)

    def _died(self, w: _Worker) -> None:
        balance.mark_dead(self.shares_fd, w.slot)  # the others stop leaving connections to it
        code = w.proc.returncode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        self.metrics.inc("beaconlake_http_worker_restarts_total")
        try:
            self.metrics.write_snapshot()
        except OSError as exc:  # a disk someone else filled must not end the server: the count waits
            log.warning("cannot write the server's metrics snapshot: %s", exc)
        if w.ready:
            log.error("server worker %d %s; starting a new one", w.proc.pid, how)
            self.next_start = 0.0
            return
        self._retry_later(f"server worker {w.proc.pid} {how} before it was ready")

    def _retry_later(self, why: str) -> None:
        self.start_failures += 1
        delay = min(0.5 * 2 ** (self.start_failures - 1), 10.0)
        log.error("%s (try %d); next try in %.1f s", why, self.start_failures, delay)
        self.next_start = time.monotonic() + delay

    def _stop_workers(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.server.shutdown_timeout_secs + EXIT_GRACE_SECS
        for w in self.workers:
            try:
                w.proc.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                log.error("server worker %d did not stop within %.0f s; killing it", w.proc.pid,
                          self.settings.server.shutdown_timeout_secs + EXIT_GRACE_SECS)
                w.proc.kill()
                w.proc.wait()
            with contextlib.suppress(OSError):
                os.close(w.ready_fd)
        self.workers.clear()


def _write_and_close(pipe, payload: bytes) -> None:
    with contextlib.suppress(OSError):
        pipe.write(payload)
        pipe.close()
