"""files.replace_file: the one write-beside, fsync, rename, fsync-the-folder of local state."""

from __future__ import annotations

import errno
import os

import pytest

from beaconlake import files


def test_a_replace_puts_the_new_bytes_whole_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    target = tmp_path / "state.bin"
    target.write_bytes(b"old")
    files.replace_file(target, b"new state")
    assert target.read_bytes() == b"new state"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]
    assert len(synced) == 2  # the file's bytes, then the folder's entry


def test_a_failed_write_keeps_the_old_file_and_removes_the_partial_copy(tmp_path, monkeypatch):
    target = tmp_path / "state.bin"
    target.write_bytes(b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as caught:
        files.replace_file(target, b"x" * 10_000, tmp_path / "state.tmp")
    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]  # a full disk is not filled further


def test_a_non_durable_replace_does_not_fsync(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: pytest.fail("fsync on a non-durable replace"))
    target = tmp_path / "partials"
    files.replace_file(target, b"snapshot", durable=False)
    assert target.read_bytes() == b"snapshot" and not (tmp_path / ".partials.tmp").exists()
