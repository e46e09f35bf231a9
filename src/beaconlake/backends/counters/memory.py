"""Counters in process memory, published as partial files and merged by whoever reads.

Each process (collector worker, deliverer) keeps its minute windows in memory and rewrites
``<data_dir>/realtime/partials/<role>-<pid>-<token>.bin`` (atomically) every
``counters.partials_interval_secs`` and on shutdown; a reader merges its live windows with
every other file, the way ``telemetry.py`` sums metrics. Partials of exited processes still
count. ``prepare`` (run by ``beaconlake up`` before any worker starts) compacts the files of an
earlier run into one, so restarts recover the state without the files piling up.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path
from typing import Any

import msgspec

from beaconlake.backends.counters.base import Capabilities, Counters, IdSet, row
from beaconlake.backends.counters.settings import MemoryCountersSettings
from beaconlake.backends.counters.sketch import STANDARD_ERROR, HyperLogLog
from beaconlake.backends.counters.windows import Agg, WindowKey, bucket_of, rollup
from beaconlake.files import replace_file

SUFFIX = ".bin"
# One window: tenant, name, group, minute, count, sketch bytes, {prop: [n, sum, sumsq, min, max]}
Packed = tuple[str, str, str, int, int, bytes, dict[str, list[float]]]


def _pack(windows: dict[WindowKey, Agg]) -> bytes:
    return msgspec.msgpack.encode([(*k, a.count, a.sketch.to_bytes(), a.nums) for k, a in windows.items()])


class _Packer:
    """Packs a process's windows for its partial file, re-encoding only the windows that
    changed since the last time: most windows are closed minutes that never change again."""

    def __init__(self) -> None:
        self.cache: dict[tuple, tuple[int, bytes]] = {}
        self.enc = msgspec.msgpack.Encoder()

    def pack(self, windows: dict) -> bytes:
        parts = []
        cache = self.cache
        for k, a in windows.items():
            hit = cache.get(k)
            if hit is None or hit[0] != a.count:  # every change adds to the count
                hit = cache[k] = (a.count, self.enc.encode((*k, a.count, a.sketch.to_bytes(), a.nums)))
            parts.append(hit[1])
        for k in [k for k in cache if k not in windows]:
            del cache[k]
        # a msgpack array of the pre-encoded windows: what _unpack reads
        return b"\xdd" + len(parts).to_bytes(4, "big") + b"".join(parts)


def _unpack(data: bytes) -> dict[WindowKey, Agg]:
    out = {}
    for t, n, g, m, count, sk, nums in msgspec.msgpack.decode(data):
        out[WindowKey(t, n, g, m)] = Agg(HyperLogLog.from_bytes(sk), count, nums)
    return out


def partials_folder(state_dir: Path) -> Path:
    return Path(state_dir) / "partials"


class MemoryCounters(Counters):
    standard_error = STANDARD_ERROR
    capabilities = Capabilities(per_process_partials=True, in_process=True, flush_interval_secs=1.0)

    def __init__(self, folder: Path, role: str, partials_interval_secs: float | None = None) -> None:
        if partials_interval_secs is not None:
            self.capabilities = dataclasses.replace(self.capabilities, flush_interval_secs=partials_interval_secs)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"{role}-{os.getpid()}-{secrets.token_hex(3)}{SUFFIX}"
        self.live: dict[WindowKey, Agg] = {}
        self._dirty = False
        self._packer = _Packer()
        self._cache: dict[Path, tuple[tuple[int, int], dict[WindowKey, Agg]]] = {}

    @classmethod
    def from_settings(cls, settings: MemoryCountersSettings, *, role: str, state_dir: Path,
                      retention_ms: int) -> MemoryCounters:
        return cls(partials_folder(state_dir), role, settings.partials_interval_secs)

    @classmethod
    def prepare(cls, settings: MemoryCountersSettings, *, state_dir: Path, before_ms: int) -> int:
        # the last run's partials, folded into one before any process writes its own
        return cls.compact(partials_folder(state_dir), before_ms)

    def add(self, batch: dict[WindowKey, Agg]) -> None:
        for key, part in batch.items():
            agg = self.live.get(key)
            if agg is None:
                agg = self.live[key] = Agg(HyperLogLog())
            agg.count += part.count
            for anon in part.sketch:
                agg.sketch.add(anon)
            agg.merge_numbers(part.nums)
        self._dirty = True

    def fold(self, folder: Any, tenant: str, events: Any, now_ms: int) -> int:
        # straight into this process's windows: no batch to build and merge
        self._dirty = True
        return folder.fold(tenant, events, now_ms, self.live, HyperLogLog)

    def flush(self) -> None:
        # Publishing for readers needs no fsync (that is for power loss): only close() pays it.
        if self._dirty:
            replace_file(self.path, self._packer.pack(self.live), durable=False)
            self._dirty = False

    def close(self) -> None:
        replace_file(self.path, self._packer.pack(self.live))
        self._dirty = False

    def _others(self) -> list[dict[WindowKey, Agg]]:
        found = []
        for path in self.folder.glob(f"*{SUFFIX}"):
            if path == self.path:
                continue
            try:
                st = path.stat()
                stamp = (st.st_mtime_ns, st.st_size)
                cached = self._cache.get(path)
                if cached is None or cached[0] != stamp:
                    cached = self._cache[path] = (stamp, _unpack(path.read_bytes()))
            except (OSError, msgspec.DecodeError, ValueError):
                continue  # replaced or removed meanwhile: the next read sees its successor
            found.append(cached[1])
        return found

    def _windows(self, match: Any) -> dict[WindowKey, Agg]:
        merged: dict[WindowKey, Agg] = {}
        for source in (self.live, *self._others()):
            for key, agg in source.items():
                if not match(key):
                    continue
                cur = merged.get(key)
                if cur is None:
                    cur = merged[key] = Agg(HyperLogLog())
                cur.merge(agg)
        return merged

    def query(self, tenant: str, name: str, start_ms: int, end_ms: int, by: str, grouped: bool) -> list[dict[str, Any]]:
        lo = bucket_of(start_ms, by)
        windows = self._windows(lambda k: k[0] == tenant and k[1] == name and lo <= k[3] < end_ms)
        buckets = rollup(windows, by, grouped, HyperLogLog)
        return [row(s, g, a, a.sketch.count()) for (s, g), a in sorted(buckets.items())]

    def series(self, start_ms: int, end_ms: int) -> set[tuple[str, str]]:
        return {(k[0], k[1]) for k in self._windows(lambda k: start_ms <= k[3] < end_ms)}

    def prune(self, before_ms: int) -> None:
        old = [k for k in self.live if k[3] < before_ms]
        for k in old:
            del self.live[k]
        self._dirty = self._dirty or bool(old)

    @staticmethod
    def compact(folder: Path, before_ms: int) -> int:
        """Fold every partial file into one (no process may be writing); return windows kept."""
        folder = Path(folder)
        paths = sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []
        if not paths:
            return 0
        merged: dict[WindowKey, Agg] = {}
        for path in paths:
            for key, agg in _unpack(path.read_bytes()).items():
                if key[3] < before_ms:
                    continue
                cur = merged.get(key)
                merged[key] = agg if cur is None else cur.merge(agg)
        target = folder / f"base-{secrets.token_hex(4)}{SUFFIX}"
        replace_file(target, _pack(merged))
        for path in paths:
            path.unlink()
        return len(merged)


__all__ = ["IdSet", "MemoryCounters"]
