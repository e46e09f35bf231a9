"""Durable local files: what makes a rename or a new file survive a crash.

A file's own fsync makes its bytes durable, not its name: the folder that holds the name must
be fsynced too, after a create, a rename or an unlink. Every writer of local state (the spool,
local lake storage, parked segments) calls this one function for it."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path | str) -> None:
    """Make the entries of folder ``path`` (names created, renamed or removed) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
