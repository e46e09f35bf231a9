"""The bytes of an HTTP/1.1 answer: status line, headers, body, in one buffer.

Every answer carries ``date``; one that ends the connection carries ``connection: close``, and
one that keeps an HTTP/1.0 connection open says ``connection: keep-alive``. Header values must
not hold CR or LF: values from the client cannot (the parser refuses them), and values from an
ASGI app are checked, so no response can be split.
"""

from __future__ import annotations

import email.utils
import http
from collections.abc import Iterable

import msgspec

_STATUS = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in http.HTTPStatus}
_json = msgspec.json.Encoder()
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CLOSE = b"connection: close\r\n"
KEEP_ALIVE = b"connection: keep-alive\r\n"
JSON = b"application/json"


def status_line(status: int) -> bytes:
    line = _STATUS.get(status)
    return line if line is not None else f"HTTP/1.1 {status} Status {status}\r\n".encode()


def date_header() -> bytes:
    return b"date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"


def error_body(reason: str, message: str) -> bytes:
    """The JSON every refusal answers with, the event endpoint's own shape."""
    return _json.encode({"error": message, "reason": reason})


def connection_header(close: bool, http_10: bool) -> bytes:
    if close:
        return CLOSE
    return KEEP_ALIVE if http_10 else b""


def simple(status: int, headers: Iterable[tuple[str, str]], body: bytes, content_type: bytes, date: bytes,
           connection: bytes, head: bool) -> bytes:
    """A whole answer with a known length (str headers: the fast routes' and the server's own)."""
    parts = [status_line(status), b"content-type: ", content_type, b"\r\ncontent-length: ",
             str(len(body)).encode(), b"\r\n", date, connection]
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    parts.append(b"\r\n")
    if not head:
        parts.append(body)
    return b"".join(parts)


def asgi_head(status: int, headers: Iterable[tuple[bytes, bytes]], date: bytes, connection: bytes,
              extra: bytes = b"") -> bytes:
    """Status line and headers of an ASGI app's answer; ``extra`` adds framing headers."""
    parts = [status_line(status)]
    has_date = False
    for name, value in headers:
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name or b":" in name:
            raise ValueError(f"response header {name!r} has a line break or a colon in it")
        lower = name.lower()
        if lower == b"connection":
            continue  # ours to decide
        has_date = has_date or lower == b"date"
        parts.append(name + b": " + value + b"\r\n")
    if not has_date:
        parts.append(date)
    parts.append(connection)
    parts.append(extra)
    parts.append(b"\r\n")
    return b"".join(parts)
