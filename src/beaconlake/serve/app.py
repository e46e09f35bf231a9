"""The composition root for HTTP: the one application every server worker runs.

``create_app(settings)`` builds one worker's parts and mounts them on one route table:

- the collector (``ingest.collector``): ``POST /v1/events`` on the fast path, answered before
  any framework (beaconlake's server calls ``fast_routes()`` with its own request objects; an
  ASGI server reaches the same handler through ``fast_asgi()``), and its side routes
  (``/healthz``, ``/readyz``, ``/metrics``, ``/beaconlake.js``, ``/v1/config``);
- the read API (``serve.api``) over the realtime stage's read model, when realtime is enabled;
- the profiles API (``serve.profiles``);
- the erasure API (``serve.erasures``): requests to forget a person, with a tenant's admin key;
- the dashboard (``serve.dashboard``): the page at ``/``, its static files, its JSON endpoints.

Every key check goes through one ``auth.Keys``, built here once from the configuration. The parts
know nothing of each other: the realtime stage's statistics destination is handed to the
collector's router, its housekeeping to the collector's clock, its counters and index to the
read API and the dashboard.

What the HTTP server needs of an app (``serve/http/worker.py``): ``fast_routes()``, ``web``
(ASGI, every other path), ``metrics``, ``body_error`` and the ``startup``/``shutdown`` hooks.
The app is also an ASGI application as a whole (in-process tests, any ASGI server).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from beaconlake.config import Settings
from beaconlake.ingest.collector.app import Collector
from beaconlake.serve.api import ReadApi
from beaconlake.serve.auth import Keys
from beaconlake.serve.dashboard.routes import Dashboard
from beaconlake.serve.erasures import ErasuresApi
from beaconlake.serve.profiles import ProfilesApi
from beaconlake.telemetry import Metrics


class App:
    """One server worker's application."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics(settings.run_path, role="collector")
        keys = Keys(settings)
        self.realtime = None
        if settings.realtime.enabled:
            from beaconlake.realtime.worker import WorkerRealtime

            self.realtime = WorkerRealtime(settings, self.metrics)
        rt = self.realtime
        self.collector = Collector(settings, self.metrics, destinations=[rt.stats] if rt else [],
                                   companions=[rt] if rt else [])
        self.body_error = self.collector.body_error
        self.read_api = ReadApi(keys, rt.counters, rt.index) if rt else None
        self.profiles = ProfilesApi(settings, keys)  # opens the profile store on its first request
        self.dashboard = Dashboard(settings, keys, self.metrics, rt.index if rt else None)
        self.erasures = ErasuresApi(settings, keys)  # opens the lake storage on its first request
        self.web = Starlette(routes=[
            *self.collector.routes(),
            *(self.read_api.routes() if self.read_api else []),
            *self.profiles.routes(),
            *self.erasures.routes(),
            *self.dashboard.routes(),
        ])
        self._fast_asgi = self.collector.fast_asgi()

    def fast_routes(self) -> dict[str, Any]:
        """The paths beaconlake's HTTP server answers without ASGI: the collector's, as they are."""
        return self.collector.fast_routes()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI."""
        if scope["type"] == "http" and scope["path"] in self._fast_asgi:
            await self._fast_asgi[scope["path"]](scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.web(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        await self.collector.startup()

    async def shutdown(self) -> None:
        await self.collector.shutdown()  # seals the spool segment, then closes the realtime companion


def create_app(settings: Settings) -> App:
    """The factory ``beaconlake up`` gives its server workers (``up.APP_FACTORY``)."""
    return App(settings)
