"""Durable local files: what makes a rename or a new file survive a crash.

A file's own fsync makes its bytes durable, not its name: the folder that holds the name must
be fsynced too, after a create, a rename or an unlink. Every writer of local state (the spool,
local lake storage, parked segments) calls this one function for it, or ``replace_file``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_dir(path: Path | str) -> None:
    """Make the entries of folder ``path`` (names created, renamed or removed) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, tmp: Path | None = None, durable: bool = True) -> None:
    """Put ``data`` at ``path`` whole or not at all: written beside it (``tmp``, by default
    ``.<name>.tmp``), renamed over it, and when ``durable`` fsynced with its folder first and
    after. A failed write (a full disk) removes the partial copy instead of leaving it to fill
    the disk further."""
    tmp = tmp if tmp is not None else path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)
