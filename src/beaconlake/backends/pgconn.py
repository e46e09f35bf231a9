"""One PostgreSQL connection per backend object, that comes back after the server does.

The PostgreSQL backends (the high-level index, the profile store) are never on the path of an
acknowledgement, but the processes that hold them live for weeks: a server restarted meanwhile
(a crash, a failover, an upgrade) must not leave them with a dead connection for good, and a
server that is down when they start must not stop them from starting (the lake deliverer holds
the high-level index: it would crash-loop, and deliver nothing, for as long as PostgreSQL is down).

So the connection is made on first use, not at construction; a call that finds it broken makes
a new one and is tried once more (every call the backends make is idempotent: inserts that
ignore conflicts, upserts, deletes, reads); and while the server is down each call fails at
once with ``BackendUnavailable``, for the caller to count and go on (the read routes answer it
503 with Retry-After). Connecting waits at
most ``CONNECT_TIMEOUT_SECS`` unless the DSN says otherwise, so an unreachable server cannot
hang the caller.

Nor can a server that stops answering (hung, or its network black-holed): its kernel still
acknowledges what is sent, so neither TCP keepalives nor a server-side statement timeout end
the wait, and a call would wait for ever (the lake deliverer's pass with it: delivery stopped
for as long as PostgreSQL hung). A call gets ``timeout_secs``; past it the connection's socket is
shut down under the waiting call, which fails as a broken connection, then as
``BackendUnavailable``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from beaconlake.errors import BackendUnavailable

T = TypeVar("T")
CONNECT_TIMEOUT_SECS = 5
CALL_TIMEOUT_SECS = 30.0


class PgConnection:
    """``run(fn)`` calls ``fn(connection)`` under a lock (one call at a time: psycopg connections
    are not shared between threads' transactions). ``schema`` (with ``lock_id`` serialising its
    creation between processes) is applied on each new connection. ``timeout_secs`` bounds a
    call (None: unbounded), ``setting`` names where it is configured, for the error."""

    def __init__(self, dsn: str, schema: str, lock_id: int, timeout_secs: float | None = CALL_TIMEOUT_SECS,
                 setting: str = "") -> None:
        params = conninfo_to_dict(dsn)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_SECS)
        self.params = params
        self.schema, self.lock_id = schema, lock_id
        self.timeout_secs, self.setting = timeout_secs, setting
        self.lock = threading.Lock()
        self.conn: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        if self.conn is not None and not self.conn.closed and not self.conn.broken:
            return self.conn
        self._drop()
        conn = psycopg.connect(**self.params, autocommit=True)
        try:
            with conn.transaction():
                # several processes may start at once: serialise the create-if-not-exists
                conn.execute("select pg_advisory_xact_lock(%s)", (self.lock_id,))
                conn.execute(self.schema)
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        return conn

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run(self, fn: Callable[[psycopg.Connection], T], *, bounded: bool = True) -> T:
        """Raises BackendUnavailable when the server cannot be reached (now, or any more), or does
        not answer within ``timeout_secs`` (unless not ``bounded``: a bulk write that may take long)."""
        limit = self.timeout_secs if bounded else None
        with self.lock:
            cut = threading.Event()
            try:
                conn = self._connect()
                try:
                    return _bounded(conn, fn, limit, cut)
                except psycopg.OperationalError:
                    if not (conn.closed or conn.broken) or cut.is_set():
                        raise  # the statement failed, not the connection; or the server does not answer
                # the server went away since the last call: a new connection, and one more try
                conn = self._connect()
                return _bounded(conn, fn, limit, cut)
            except psycopg.OperationalError as exc:
                if self.conn is not None and not (self.conn.closed or self.conn.broken):
                    raise
                self._drop()
                where = f"{self.params.get('host', 'localhost')}:{self.params.get('port', 5432)}"
                if cut.is_set():
                    raise BackendUnavailable(f"PostgreSQL at {where} did not answer within {limit:g} s"
                                             + (f" ({self.setting})" if self.setting else "")) from exc
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise BackendUnavailable(f"PostgreSQL at {where} cannot be reached: {first}") from exc

    def close(self) -> None:
        with self.lock:
            self._drop()


def _bounded(conn: psycopg.Connection, fn: Callable[[psycopg.Connection], T], limit: float | None,
             cut: threading.Event) -> T:
    if limit is None:
        return fn(conn)
    timer = threading.Timer(limit, _cut, (conn, cut))
    timer.daemon = True
    timer.start()
    try:
        return fn(conn)
    finally:
        timer.cancel()


def _cut(conn: psycopg.Connection, cut: threading.Event) -> None:
    """Shut the connection's socket down under the call waiting on it: the call then reads the
    end of the stream and fails as a broken connection (a shutdown reaches every descriptor of
    the socket, the duplicate made here included)."""
    cut.set()
    with contextlib.suppress(OSError, psycopg.Error):
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
