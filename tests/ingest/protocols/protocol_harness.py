"""The Segment and Snowplow doors in process, over the native door's harness: a real spool
writer, read back with lake delivery's own code (``Door.spooled``)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from door_harness import PEER, WRITE_KEY, Answer, Door

from beaconlake.ingest.collector.events import EventRequest
from beaconlake.ingest.collector.foreign import ForeignDoor
from beaconlake.ingest.collector.segment_api import SegmentApi
from beaconlake.ingest.collector.snowplow_api import SnowplowApi

JSON = {"content-type": "application/json"}
SERVER_UA = "python-requests/2.32.3"


def basic(key: str = WRITE_KEY) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


class ProtocolDoor(Door):
    def __init__(self, folder: Path, tenant: dict | None = None, **sections: dict) -> None:
        super().__init__(folder, tenant, **sections)
        door = ForeignDoor(self.endpoint)
        self.segment = SegmentApi(door)
        self.snowplow = SnowplowApi(door, self.settings)
        self.routes = {**self.segment.fast_routes(), **self.snowplow.fast_routes()}

    def call(self, path: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST",
             query: str = "", peer: str | None = PEER) -> Answer:
        hdrs = {"user-agent": SERVER_UA, **{k.lower(): v for k, v in (headers or {}).items()}}

        async def read_body(limit: int) -> bytes:
            return body

        req = EventRequest(method, query, hdrs.get, peer, read_body)
        status, headers_out, answer = self.loop.run_until_complete(self.routes[path](req))
        return Answer(status, dict(headers_out), answer)

    def pixel(self, query: str, headers: dict[str, str] | None = None) -> Answer:
        """``GET /i?query`` through the Starlette route, as a server would call it."""
        from starlette.testclient import TestClient
        from starlette.applications import Starlette
        from starlette.routing import Route

        app = Starlette(routes=[Route(self.snowplow.get_path, self.snowplow.get, methods=["GET", "OPTIONS"])])
        with TestClient(app) as client:
            # TestClient runs the app on its own loop: the spool writer's lock must not be bound to ours
            r = client.get(self.snowplow.get_path + "?" + query, headers={"user-agent": SERVER_UA, **(headers or {})})
        return Answer(r.status_code, dict(r.headers), r.content)


def message(kind: str = "track", **kw: Any) -> dict:
    base: dict[str, Any] = {"type": kind, "anonymousId": "anon-1", "timestamp": "2025-11-27T08:00:00.000Z",
                            "messageId": "0f2a5a0e-7d7e-4a43-9c55-2f8f0f6b9a11"}
    if kind == "track":
        base["event"] = "Order Completed"
        base["properties"] = {"revenue": 42.5}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}
