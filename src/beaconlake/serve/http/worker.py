"""One server worker process, started by the supervisor::

    python -m beaconlake.serve.http.worker --fd N --ready-fd M --app module:factory --max-connections C

It serves the listening socket it inherits (``--fd``) with the app that ``factory(settings)``
builds, the settings arriving pickled on stdin (the supervisor's, command-line overrides
included, so a restarted worker runs exactly what the first one ran). Life cycle:

1. build the app and run its start-up hook (``await app.startup()``);
2. accept connections, then write one byte to ``--ready-fd`` (the supervisor's "ready");
3. on SIGTERM or SIGINT, or when the supervisor is gone (its pid is no longer our parent),
   stop accepting, let requests in flight finish (``server.shutdown_timeout_secs``) and run the
   app's shutdown hook (``await app.shutdown()``: the collector seals its spool segment there).

The app provides ``fast_routes()`` (path -> handler, the paths served without ASGI), ``web`` (the
ASGI app for every other path), ``metrics`` and ``body_error`` (the exception type its
handlers expect from ``read_body``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import os
import pickle
import signal
import socket
import sys
from typing import Any

import uvloop

from beaconlake import logs
from beaconlake.config import Settings
from beaconlake.procname import set_process_name
from beaconlake.serve.http.balance import Shares
from beaconlake.serve.http.server import HttpServer, Limits

log = logging.getLogger(__name__)
PARENT_CHECK_SECS = 1.0


def load_factory(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


async def serve(settings: Settings, app: Any, sock: socket.socket, max_connections: int, ready_fd: int,
                shares: Shares | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    await app.startup()
    # What start-up made (modules, the app, compiled schemas and regexes: ~100,000 objects) is
    # never garbage. Under load, requests' objects outlive young collections while they wait for
    # their fsync, so full collections come every few thousand requests; frozen, the start-up
    # objects are no longer traversed by each (measured: 11 % of a worker's busy samples were
    # gc_collect_main before; docs/performance.md, "Ingest").
    gc.freeze()
    # A request's objects live tens of milliseconds (until their fsync), so with 700 allocations
    # between young collections most of them were traversed and promoted, and full collections
    # followed. 20,000 lets most die young: 1.2-1.5 x the requests a second at 256 connections
    # (docs/performance.md, "Ingest"). Only cyclic garbage waits longer; it is rare on this path.
    gc.set_threshold(20_000, 20, 20)
    server = HttpServer(app.fast_routes(), app.web, Limits.from_settings(settings, max_connections), app.metrics,
                        app.body_error, shares)
    try:
        await server.start(sock)
        os.write(ready_fd, b"r")
        os.close(ready_fd)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), PARENT_CHECK_SECS)
            except TimeoutError:
                if os.getppid() != parent:
                    log.error("the server supervisor (pid %d) is gone; worker %d stops", parent, os.getpid())
                    break
        await server.shutdown()
    finally:
        await app.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="beaconlake.serve.http.worker")
    p.add_argument("--fd", type=int, required=True, help="the inherited listening socket")
    p.add_argument("--ready-fd", type=int, required=True, help="write one byte here once serving")
    p.add_argument("--app", required=True, help="module:factory, called with the settings")
    p.add_argument("--max-connections", type=int, required=True)
    p.add_argument("--shares-fd", type=int, help="the workers' shared connection counts (balance.py)")
    p.add_argument("--slot", type=int, default=0, help="this worker's slot in them")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logs.setup(args.log_level)
    set_process_name("bl-worker")
    settings: Settings = pickle.load(sys.stdin.buffer)
    sock = socket.socket(fileno=args.fd)
    app = load_factory(args.app)(settings)
    shares = None
    if args.shares_fd is not None and settings.server.workers > 1:
        shares = Shares(args.shares_fd, args.slot, settings.server.workers)
    uvloop.run(serve(settings, app, sock, args.max_connections, args.ready_fd, shares))
    return 0


if __name__ == "__main__":
    sys.exit(main())
