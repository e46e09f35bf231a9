"""The collector: the event endpoint plus the small routes around it, and the worker's spool.

``POST /v1/events``, and the routes of the protocols the collector also speaks (Segment's HTTP API,
``segment_api``; Snowplow's tracker protocol, ``snowplow_api``), are dispatched before any framework
sees the request: they are the hot path and need none of a framework's request objects. The collector hands its routes to the
composition root (``serve.app``), which mounts them beside the read APIs and the dashboard:
``fast_routes()`` for beaconlake's own HTTP server (``serve/http``, no ASGI), ``fast_asgi()``
for the same paths over ASGI (in-process tests, other servers), ``routes()`` for the rest.
Each server worker process runs one collector, with its own spool segment; ``startup`` and
``shutdown`` are its life-cycle hooks.

It knows nothing of what is mounted beside it: best-effort router destinations (realtime
statistics) and the companions that share its housekeeping clock are handed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from beaconlake.config import Settings
from beaconlake.ingest import spool
from beaconlake.ingest.collector import asgi
from beaconlake.ingest.collector.events import EventRequest, EventsEndpoint, Headers, Refused, SpoolPressure
from beaconlake.ingest.collector.foreign import ForeignDoor
from beaconlake.ingest.collector.segment_api import SegmentApi
from beaconlake.ingest.collector.snowplow_api import SnowplowApi
from beaconlake.ingest.route import Destination, build_router
from beaconlake.logs import RepeatedFailures
from beaconlake.telemetry import Metrics

log = logging.getLogger(__name__)

TRACKER_JS = Path(__file__).resolve().parent.parent / "tracker" / "beaconlake.js"
HOUSEKEEPING_SECS = 0.25
AsgiHandler = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class FastRequest(Protocol):
    """What the fast path reads of a request of beaconlake's HTTP server (``serve.http.request``)."""

    method: str
    query: str
    peer: str | None

    def header(self, name: str) -> str | None: ...

    async def read_body(self, limit: int) -> bytes: ...


class Companion(Protocol):
    """What a worker runs beside the collector on its clock: ``housekeeping`` on every tick
    (whatever it raises is counted and logged, and the next tick tries again; it must not block
    the event loop on a server), ``close`` at shutdown once the spool segment is sealed."""

    name: str  # the housekeeping step's label on /metrics

    def housekeeping(self) -> None: ...

    def close(self) -> None: ...


class Collector:
    """One worker's collector: owns its spool writer, the router and the housekeeping task."""

    body_error = Refused  # what the HTTP server's read_body raises: the event endpoint's own refusal

    def __init__(self, settings: Settings, metrics: Metrics, destinations: Sequence[Destination] = (),
                 companions: Sequence[Companion] = ()) -> None:
        """``destinations``: best-effort router destinations after the lake (the spool);
        ``companions``: housekept on this collector's ticks and closed at its shutdown."""
        self.settings = settings
        self.metrics = metrics
        self.pressure = SpoolPressure()
        self.writer = spool.SegmentWriter(settings.spool_path, settings.spool)
        self.router = build_router(self.writer, self.metrics, list(destinations))
        self.companions = list(companions)
        self.events = EventsEndpoint(settings, self.router, self.metrics, self.pressure)
        door = ForeignDoor(self.events)
        self.segment = SegmentApi(door)
        self.snowplow = SnowplowApi(door, settings)
        self.tenants_by_write_key = settings.tenant_by_write_key()
        self.ready = False
        self._task: asyncio.Task[None] | None = None
        self._failures = RepeatedFailures(log)
        self._tracker: tuple[bytes, bytes] | None = None  # the script, plain and gzipped

    def _protocols(self) -> dict[str, Callable[[EventRequest], Awaitable[tuple[int, Headers, bytes]]]]:
        """The event-taking paths of the protocols the collector also speaks (Segment, Snowplow)."""
        return {**self.segment.fast_routes(), **self.snowplow.fast_routes()}

    def fast_routes(self) -> dict[str, Any]:
        """The paths beaconlake's HTTP server answers without ASGI; ``/v1/events`` with no layer
        between the server and its handler."""
        return {"/v1/events": self._post_events, **{path: _fast(handle) for path, handle in self._protocols().items()}}

    def fast_asgi(self) -> dict[str, AsgiHandler]:
        """The same paths for an ASGI server, answered before any framework."""
        return {"/v1/events": self._asgi_events, **{path: _asgi(handle) for path, handle in self._protocols().items()}}

    async def _post_events(self, req: FastRequest) -> tuple[int, Headers, bytes]:
        return await self.events.handle(EventRequest(req.method, req.query, req.header, req.peer, req.read_body))

    async def _asgi_events(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asgi.serve_events(self.events.handle, scope, receive, send)

    def routes(self) -> list[Route]:
        """Every other path of the collector, for a framework to route."""
        return [
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/metrics", self.metrics_text),
            Route("/beaconlake.js", self.tracker_js),
            Route("/v1/config", self.tracker_config, methods=["GET", "OPTIONS"]),
            Route(self.snowplow.get_path, self.snowplow.get, methods=["GET", "HEAD", "OPTIONS"]),
        ]


    # -- lifecycle -----------------------------------------------------------------------

    async def startup(self) -> None:
        self._start(asyncio.get_running_loop())

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        from beaconlake.ingest.collector.enrich import user_agent

        user_agent("Mozilla/5.0")  # load the parser's regexes now, not on the first request
        self._check_pressure()
        self._task = loop.create_task(self._housekeeping())
        self.ready = True

    async def shutdown(self) -> None:
        self.ready = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.writer.seal()
        for companion in self.companions:
            companion.close()
        self._publish_metrics()

    async def _housekeeping(self) -> None:
        # Each step on its own, and nothing but cancellation ends the loop: whatever a step raises
        # (a full disk, a backend down, a bug), the segment is still sealed on time and the
        # spool's pressure still checked. (The fault suite found a Redis refusing one prune
        # ending this task: that worker's events then waited for 64 MB of segment, not 10 s.)
        ticks = 0
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECS)
            ticks += 1
            try:
                await self.writer.seal_if_due()
            except Exception as exc:
                self._step_failed("seal", exc)
            self._step("pressure", self._check_pressure)
            for companion in self.companions:
                self._step(companion.name, companion.housekeeping)
            if ticks % 4 == 0:
                self._step("metrics", self._publish_metrics)

    def _step(self, name: str, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:
            self._step_failed(name, exc)

    def _step_failed(self, name: str, exc: Exception) -> None:
        self.metrics.inc("beaconlake_housekeeping_failures_total", step=name)
        self._failures.failed(f"housekeeping step {name}", exc,
                              f"housekeeping step {name} failed; the next tick tries again")

    def _publish_metrics(self) -> None:
        self._count_spooled()
        self.metrics.write_snapshot()

    def _count_spooled(self) -> None:
        self.metrics.inc("beaconlake_spooled_bytes_total", self.writer.bytes_written)
        self.writer.bytes_written = 0

    def _check_pressure(self) -> None:
        """Whether the spool can take writes now; the reason it cannot is what requests (503 +
        Retry-After) and ``/readyz`` answer. Re-checked every housekeeping tick, so both follow
        the spool back without a restart."""
        s = self.settings.spool
        gauges = spool.spool_gauges(self.settings.spool_path, time.time())
        for name, value in gauges.items():  # this process's own reading wins over the deliverer's snapshot
            self.metrics.set(name, value)
        pending = int(gauges["beaconlake_spool_undelivered_bytes"])
        if pending > s.max_undelivered_bytes:
            reason = f"{pending} undelivered spool bytes, limit spool.max_undelivered_bytes={s.max_undelivered_bytes}"
        else:
            # room for one request of the largest size, and no write failing since the last that did
            reason = self.writer.unwritable_reason(self.settings.collector.max_body_bytes)
        if bool(reason) != bool(self.pressure.reason):
            (log.warning if reason else log.info)("spool %s", f"cannot take writes: {reason}" if reason else "takes writes again")
        self.pressure.reason = reason
        if self.writer.write_failures:
            self.metrics.inc("beaconlake_spool_write_failures_total", self.writer.write_failures)
            self.writer.write_failures = 0

    # -- small routes ----------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if not self.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        if self.pressure.reason:
            return JSONResponse({"status": "shedding", "reason": self.pressure.reason}, status_code=503)
        if self.writer.failure:  # a write failed since the last check: not ready until one succeeds
            return JSONResponse({"status": "shedding", "reason": self.writer.failure}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics_text(self, request: Request) -> Response:
        self._count_spooled()
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def tracker_js(self, request: Request) -> Response:
        if self._tracker is None:
            try:
                plain = TRACKER_JS.read_bytes()
            except FileNotFoundError:
                return PlainTextResponse(f"the tracker is not built: {TRACKER_JS} is missing", status_code=404)
            self._tracker = (plain, gzip.compress(plain, 9))
        plain, packed = self._tracker
        headers = {"cache-control": "public, max-age=300", "access-control-allow-origin": "*", "vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(packed, media_type="application/javascript", headers={**headers, "content-encoding": "gzip"})
        return Response(plain, media_type="application/javascript", headers=headers)

    async def tracker_config(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        key = request.query_params.get("k")
        tenant = self.tenants_by_write_key.get(key) if key else None
        headers = {"access-control-allow-origin": origin, "vary": "Origin"} if origin else {}
        if tenant is None:
            return JSONResponse({"error": "unknown write key", "reason": "unknown_key"}, status_code=401, headers=headers)
        rules = self.events.rules[tenant.write_key]
        if not rules.origin_allowed(origin):
            return JSONResponse({"error": f"origin {origin!r} is not allowed for this tenant", "reason": "origin"}, status_code=403)
        body = {
            "tenant": tenant.id,
            "tracker": msgspec.to_builtins(tenant.tracker),
            "sequences": msgspec.to_builtins(tenant.sequences),
        }
        return JSONResponse(body, headers={**headers, "cache-control": "public, max-age=60"})


def _fast(handle: Callable[[EventRequest], Awaitable[tuple[int, Headers, bytes]]]) -> Callable[[FastRequest], Awaitable[Any]]:
    async def route(req: FastRequest) -> tuple[int, Headers, bytes]:
        return await handle(EventRequest(req.method, req.query, req.header, req.peer, req.read_body))
    return route


def _asgi(handle: Callable[[EventRequest], Awaitable[tuple[int, Headers, bytes]]]) -> AsgiHandler:
    async def route(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asgi.serve_events(handle, scope, receive, send)
    return route
