"""ASGI adapter for the fast-path endpoints (used by in-process tests and any ASGI server)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from beaconlake.ingest.collector.events import EventRequest, Headers, Refused, too_large

Handler = Callable[[EventRequest], Awaitable[tuple[int, Headers, bytes]]]


async def serve_events(handle: Handler, scope: dict[str, Any], receive: Any, send: Any) -> None:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

    async def read_body(limit: int) -> bytes:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large(int(declared), limit)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Refused(400, "disconnected", "client went away before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Refused(413, "too_large", f"body is over {limit} bytes, limit {limit}")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    peer = scope.get("client")
    req = EventRequest(scope["method"], scope.get("query_string", b"").decode("latin-1"), headers.get,
                       peer[0] if peer else None, read_body)
    status, extra, body = await handle(req)
    response_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    response_headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})
