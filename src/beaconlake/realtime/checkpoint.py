"""The spool detector's checkpoint on disk: a snapshot, and a journal of what each pass changed.

The deliverer checkpoints the detector after every pass that fed it, before lake delivery
deletes the segments fed. Written whole, the checkpoint cost what the state holds (every person
active in the longest window: 75 MB and 0.7 s a pass under ``bench/realtime``), not what the
pass changed. So a pass appends the detector's ``delta`` to ``detector.journal``, and the
snapshot ``detector.bin`` is rewritten only once the journal has grown past half of it.

Invariants:

- **Atomic passes.** A journal entry is its length, its CRC32 and its bytes, fsynced before
  ``save`` returns. Loading stops at the first entry that is short or fails its CRC (a crash
  while appending) and cuts the file there, so the next entry follows the last whole one: the
  state is that of the last pass whose ``save`` returned, and the segments of the pass cut
  off are fed again (they were not delivered, and ``processed`` does not name them). An entry
  that is whole but fails its CRC is no crash's: the journal is kept aside as it was
  (``detector.journal.corrupt-<ms>``) and an error logged, since the passes after it are lost.
  A snapshot or entry that cannot be decoded is set aside the same way and the detector
  starts empty: lake delivery, which runs in the same process, never stops over it.
- **Generations.** A snapshot carries its number; the journal's entries carry the number of
  the snapshot they follow. A new snapshot replaces the old one (write, fsync, rename) before
  the journal is emptied, so a crash between the two leaves entries of an older generation,
  which loading skips.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import msgspec

from beaconlake.files import fsync_dir, replace_file
from beaconlake.realtime.sequences import Detector

log = logging.getLogger(__name__)
SNAPSHOT, JOURNAL = "detector.bin", "detector.journal"
_HEAD = struct.Struct("<II")  # length, CRC32 of the entry
MIN_JOURNAL_BYTES = 4 * 1024 * 1024  # below this a snapshot is never worth rewriting


class Checkpoint:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.snapshot, self.journal = folder / SNAPSHOT, folder / JOURNAL
        self.snapshot_bytes = 0
        self.journal_bytes = 0

    def load(self, detector: Detector) -> bool:
        """Restore ``detector`` from the snapshot and the journal; False if there is none."""
        if not self.snapshot.exists():
            return False
        data = self.snapshot.read_bytes()
        entries, good, size, corrupt = self._entries()
        try:
            detector.load(data, entries)
        except msgspec.DecodeError as exc:  # unreadable: lake delivery must not stop over it
            self._set_aside(detector, exc)
            return False
        self.snapshot_bytes = len(data)
        if corrupt:
            kept = self.journal.with_name(f"{JOURNAL}.corrupt-{time.time_ns() // 1_000_000}")
            shutil.copyfile(self.journal, kept)
            log.error("realtime: %s has an entry that fails its CRC at byte %d of %d; the detector goes on from "
                      "the %d entries before it, and what the passes after it fed is not in its state "
                      "(the journal as it was is kept in %s)", self.journal, good, size, len(entries), kept.name)
        elif size != good:
            log.warning("realtime: %s ends in a partial entry (%d bytes, a crash while appending); cut off, its "
                        "segments are fed again", self.journal, size - good)
        if size != good:
            os.truncate(self.journal, good)  # the next entry must follow the last whole one
        self.journal_bytes = good
        return True

    def _set_aside(self, detector: Detector, exc: Exception) -> None:
        """Keep the unreadable files as they were, and start the detector empty."""
        stamp = time.time_ns() // 1_000_000
        kept = []
        for path in (self.snapshot, self.journal):
            if path.exists():
                os.replace(path, path.with_name(f"{path.name}.corrupt-{stamp}"))
                kept.append(f"{path.name}.corrupt-{stamp}")
        fsync_dir(self.folder)
        detector.reset()
        log.error("realtime: the detector's checkpoint in %s cannot be read (%s); detection starts again from no "
                  "state, so sequences begun before now are not matched (the files are kept as %s)",
                  self.folder, exc, ", ".join(kept))

    def save(self, detector: Detector, whole: bool = False) -> None:
        """Checkpoint what changed since the last ``save`` (or ``load``) of this detector. After
        a failed one the next is whole: the failed entry's changes are in no other."""
        try:
            self._save(detector, whole or not self.snapshot_bytes)
        except BaseException:
            self.snapshot_bytes = 0
            raise

    def _save(self, detector: Detector, whole: bool) -> None:
        if not whole:
            entry = detector.delta()
            if self.journal_bytes + len(entry) <= max(MIN_JOURNAL_BYTES, self.snapshot_bytes // 2):
                self._append(entry)
                return
        detector.state.generation += 1
        data = detector.dump()
        self.folder.mkdir(parents=True, exist_ok=True)
        replace_file(self.snapshot, data, self.snapshot.with_suffix(".tmp"))
        if self.journal.exists():
            os.truncate(self.journal, 0)  # its entries are of the older generation now
        self.snapshot_bytes, self.journal_bytes = len(data), 0

    def _append(self, entry: bytes) -> None:
        created = not self.journal.exists()
        with open(self.journal, "ab") as f:
            f.write(_HEAD.pack(len(entry), zlib.crc32(entry)) + entry)
            f.flush()
            os.fsync(f.fileno())
        if created:
            fsync_dir(self.folder)
        self.journal_bytes += _HEAD.size + len(entry)

    def _entries(self) -> tuple[list[bytes], int, int, bool]:
        """The journal's whole entries, the size they take, the file's size, and whether what
        follows them is a corrupt entry rather than a torn one."""
        if not self.journal.exists():
            return [], 0, 0, False
        raw = self.journal.read_bytes()
        out, at = [], 0
        while at + _HEAD.size <= len(raw):
            size, crc = _HEAD.unpack_from(raw, at)
            body = raw[at + _HEAD.size: at + _HEAD.size + size]
            if len(body) != size:
                break
            if zlib.crc32(body) != crc:
                return out, at, len(raw), True
            out.append(body)
            at += _HEAD.size + size
        return out, at, len(raw), False
