"""Logging set-up shared by every beaconlake process: human lines on a terminal, JSON lines
(one object per record) otherwise, so a log collector can parse them without a pattern."""

from __future__ import annotations

import json
import logging
import sys
import time

_HANDLER_NAME = "beaconlake"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not when the handler was
    made: a replaced stderr (a test's capture, a daemon's redirect) may be closed by then."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    if (stream or sys.stderr).isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # replace only our own handler from an earlier call: others (a test's log capture, an
    # embedding application's) stay
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    root.setLevel(level)


class RepeatedFailures:
    """A failure that repeats while its cause lasts (a server down, a full disk), logged once with
    its traceback, then summed in a line at most every ``every`` seconds per kind: not a
    traceback per request or per tick, and never silent."""

    def __init__(self, logger: logging.Logger, every: float = 10.0) -> None:
        self.logger, self.every = logger, every
        self._unlogged: dict[str, int] = {}  # kind -> failures since its last log line
        self._logged_at: dict[str, float] = {}

    def failed(self, kind: str, exc: BaseException, first: str) -> None:
        """``first``: the message of the first failure of ``kind``, logged with the traceback."""
        now = time.monotonic()
        self._unlogged[kind] = self._unlogged.get(kind, 0) + 1
        last = self._logged_at.get(kind)
        if last is None:
            self.logger.error("%s", first, exc_info=exc)
        elif now - last >= self.every:
            self.logger.error("%s failed %d time(s) in the last %.0f s; the last: %s: %s", kind,
                              self._unlogged[kind], now - last, type(exc).__name__, exc)
        else:
            return
        self._logged_at[kind] = now
        self._unlogged[kind] = 0
