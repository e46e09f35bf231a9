"""RSGI adapters (granian's native interface): the event endpoint, and a bridge that lets the
ASGI side routes (Starlette) run behind the same server.

RSGI hands the handler a scope and a protocol object with ``await proto()`` for the body
and ``proto.response_bytes(...)`` for the answer: no per-message dicts and coroutine hops,
which is what makes it cheaper than ASGI on the hot path.
"""

from __future__ import annotations

import asyncio
from typing import Any

from beaconlake.ingest.collector.events import EventRequest, EventsEndpoint, Refused, too_large

JSON_CONTENT = ("content-type", "application/json")


def peer_address(client: str) -> str | None:
    """``"1.2.3.4:5678"`` or ``"[::1]:5678"`` → the address."""
    host = client.rsplit(":", 1)[0] if client else ""
    return host.strip("[]") or None


async def serve_events(endpoint: EventsEndpoint, scope: Any, proto: Any) -> None:
    headers = scope.headers

    async def read_body(limit: int) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > limit:
                raise too_large(int(declared), limit)
            return await proto()  # framed by Content-Length: cannot exceed what was declared
        chunks, size = [], 0
        async for chunk in proto:
            size += len(chunk)
            if size > limit:
                raise Refused(413, "too_large", f"body is over {limit} bytes, limit {limit}")
            chunks.append(chunk)
        return b"".join(chunks)

    req = EventRequest(scope.method, scope.query_string, headers.get, peer_address(scope.client), read_body)
    status, extra, body = await endpoint.handle(req)
    proto.response_bytes(status, [JSON_CONTENT, *extra], body)


async def serve_asgi(app: Any, scope: Any, proto: Any) -> None:
    """Run an ASGI HTTP app for one RSGI request. The side routes are small request/response
    handlers, so the request body is read whole; responses may stream."""
    host, _, port = scope.client.rpartition(":")
    asgi_scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": scope.http_version,
        "method": scope.method,
        "scheme": scope.scheme,
        "path": scope.path,
        "raw_path": scope.path.encode(),
        "query_string": scope.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in scope.headers.items()],
        "client": (host.strip("[]"), int(port or 0)),
        "server": None,
    }
    body = await proto()
    delivered = False
    disconnected = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    status, headers, stream = 500, [], None

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers, stream
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            chunk, more = message.get("body", b""), message.get("more_body", False)
            if stream is None and not more:
                proto.response_bytes(status, headers, chunk)
                return
            if stream is None:
                stream = proto.response_stream(status, headers)
            if chunk:
                await stream.send_bytes(chunk)

    try:
        await app(asgi_scope, receive, send)
    finally:
        disconnected.set()
