"""A raw-socket HTTP client for the server tests: send exact bytes, read exact answers.

Answers are parsed with httptools' response parser (a real parser, not a regex), so a
malformed answer fails the test instead of being read leniently.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field

import httptools

STATUS_LINE = re.compile(rb"^HTTP/1\.[01] [1-5]\d\d [^\r\n]*\r\n")


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class _Collect:
    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.current: Answer | None = None
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.current = Answer(0)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.current.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.current.body += body

    def on_message_complete(self) -> None:
        self.answers.append(self.current)
        self.current = None


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_answers(sock: socket.socket, count: int, timeout: float = 5.0) -> list[Answer]:
    """Read ``count`` whole answers (fewer if the server closes first)."""
    c = _Collect()
    deadline = time.monotonic() + timeout
    while len(c.answers) < count:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        data = sock.recv(65536)
        if not data:
            if c.current is not None and c.current.status and "content-length" not in c.current.headers:
                c.parser.feed_data(b"")  # a close-delimited body ends here
            break
        c.parser.feed_data(data)
    return c.answers


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float | None]:
    """Everything the server sends until it closes, and when it closed (None: still open at timeout)."""
    start = time.monotonic()
    deadline = start + timeout
    got = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got, None
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return got, None
        except ConnectionResetError:
            return got, time.monotonic() - start
        if not data:
            return got, time.monotonic() - start
        got += data


def request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
            version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: test"]
    hdrs = dict(headers or {})
    if (body or method in ("POST", "PUT")) and "transfer-encoding" not in hdrs:
        hdrs.setdefault("content-length", str(len(body)))
    lines += [f"{k}: {v}" for k, v in hdrs.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
