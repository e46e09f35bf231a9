"""The rules a request head must meet before any route sees it, and how its headers are folded.

``problem`` returns the refusal (status, reason, message) the server answers itself: CONNECT
(not a proxy), an Upgrade with a body, HTTP/1.1 without Host, a target that is not a path, an
unknown expectation, a body with no framing (411: its end could not be found, so the
connection could not go on). Anything else goes to a route.
"""

from __future__ import annotations

BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))


def problem(method: str, target: bytes, headers: dict[bytes, bytes], http_10: bool, length: bytes | None,
            chunked: bool, upgrade: bool) -> tuple[int, str, str] | None:
    """Why the server answers a request itself, before any route (None: it does not)."""
    if method == "CONNECT":
        return 405, "method", "CONNECT is not supported: this is not a proxy"
    if upgrade and (chunked or (length is not None and length != b"0")):
        return 400, "upgrade", "an Upgrade request with a body is not supported; send it without Upgrade"
    if not http_10 and b"host" not in headers:
        return 400, "missing_host", "HTTP/1.1 requests need a Host header"
    if target[:1] != b"/" and not target.startswith((b"http://", b"https://")):
        return 400, "target", f"request target {target[:80]!r} is not a path; send e.g. /v1/events"
    expect = headers.get(b"expect")
    if expect is not None and expect.lower() != b"100-continue":
        return 417, "expect", f"Expect: {expect[:80].decode('latin-1')!r} is not supported; only 100-continue is"
    if method in BODY_METHODS and length is None and not chunked:
        return 411, "length_required", (f"a {method} needs a Content-Length header (or, in HTTP/1.1, "
                                        "Transfer-Encoding: chunked) to say where its body ends")
    return None


def merged(raw: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Repeated headers joined into one value (RFC 9110 5.3), cookies with "; " (RFC 6265 5.4)."""
    headers: dict[bytes, bytes] = {}
    for name, value in raw:
        key = name.lower()
        if key in headers:
            value = headers[key] + (b"; " if key == b"cookie" else b", ") + value
        headers[key] = value
    return headers


def origin_form(target: bytes) -> bytes:
    """``http://host/path`` (absolute form, which servers must accept) -> ``/path``."""
    rest = target.split(b"://", 1)[1]
    slash = rest.find(b"/")
    return rest[slash:] if slash >= 0 else b"/"
