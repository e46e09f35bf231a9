"""A TCP proxy between a client and a real server that fails on command: the storage outage
of the fault tests, made of real sockets (the client's own retries and timeouts are what is
tested, so nothing is mocked on its side).

Modes, switched at any time with ``proxy.mode = ...``:

* ``pass``: bytes flow both ways;
* ``refuse``: the listening socket is closed, so connecting fails (ECONNREFUSED), as when the
  server is down;
* ``stall``: connections are accepted and read, and nothing is ever answered, as a server that
  hangs or a network that black-holes (the client's timeouts must end it);
* ``error500``: every request is answered ``500 InternalError`` with an S3 error document, as
  S3 does when it is having a bad day (the client's retries must not turn it into data loss).

Connections already passing through are cut when the mode leaves ``pass``.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
import time

MODES = ("pass", "refuse", "stall", "error500")
S3_ERROR = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>"
            b"<Message>We encountered an internal error. Please try again.</Message></Error>")


class FaultProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._mode = "pass"
        self.lock = threading.Lock()
        self.seen: collections.Counter[str] = collections.Counter()  # connections accepted, by mode
        self.live: set[socket.socket] = set()
        self.closed = False
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        assert mode in MODES, mode
        with self.lock:
            previous, self._mode = self._mode, mode
            if previous == "pass" and mode != "pass":
                for s in list(self.live):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
            if mode == "refuse" and self.listener is not None:
                self.listener.close()
                self.listener = None
        if previous == "refuse" and mode != "refuse":
            self._listen()

    def _listen(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        self.port = s.getsockname()[1]
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def close(self) -> None:
        self.closed = True
        self.mode = "refuse"
        for s in list(self.live):
            with contextlib.suppress(OSError):
                s.close()

    # -- connections ----------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: refuse mode, or the end
            mode = self._mode
            self.seen[mode] += 1
            target = {"pass": self._pass, "stall": self._stall, "error500": self._error}.get(mode)
            if target is None:
                client.close()
                continue
            threading.Thread(target=target, args=(client,), daemon=True).start()

    def _track(self, *socks: socket.socket) -> None:
        with self.lock:
            self.live.update(socks)

    def _forget(self, *socks: socket.socket) -> None:
        with self.lock:
            for s in socks:
                self.live.discard(s)
                with contextlib.suppress(OSError):
                    s.close()

    def _pass(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        self._track(client, server)
        threading.Thread(target=self._pump, args=(server, client), daemon=True).start()
        self._pump(client, server)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        self._forget(src, dst)

    def _stall(self, client: socket.socket) -> None:
        """Read whatever comes, answer nothing, until the client gives up or the test ends."""
        self._track(client)
        client.settimeout(1.0)
        while not self.closed:
            try:
                if not client.recv(65536):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        self._forget(client)

    def _error(self, client: socket.socket) -> None:
        """Read a request's head (and its body, when it is not waiting for 100-continue), then
        answer 500 and close."""
        self._track(client)
        client.settimeout(5.0)
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    raise ConnectionError
                head += chunk
            head, _, body = head.partition(b"\r\n\r\n")
            fields = {k.strip().lower(): v.strip() for k, _, v in
                      (line.partition(b":") for line in head.split(b"\r\n")[1:])}
            if fields.get(b"expect", b"").lower() != b"100-continue":
                length = int(fields.get(b"content-length", b"0") or 0)
                deadline = time.monotonic() + 5
                while len(body) < length and time.monotonic() < deadline:
                    chunk = client.recv(65536)
                    if not chunk:
                        break
                    body += chunk
            client.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n"
                           b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(S3_ERROR), S3_ERROR))
        except (OSError, ConnectionError, ValueError):
            pass
        self._forget(client)
