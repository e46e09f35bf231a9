"""A HyperLogLog distinct-count sketch: mergeable, so per-process partials combine at read time.

Precision p = 14 (16,384 six-bit registers, kept one per byte), 64-bit hashes (blake2b, so
every process hashes an id the same way), and Ertl's improved estimator ("New cardinality
estimation algorithms for HyperLogLog sketches", 2017), which needs no bias tables and is
accurate from a handful of ids to billions.

**Error: relative standard error 1.04/sqrt(16384) = 0.81%**; 99.7% of estimates fall within
3 standard errors (2.4%). Redis's PFCOUNT (the redis counters backend) has the same
precision and the same stated error. Small sketches stay sparse (a dict of the registers
that are set) until they would not save memory; merging takes the register-wise maximum.
"""

from __future__ import annotations

import hashlib
import math

P = 14
M = 1 << P
Q = 64 - P
STANDARD_ERROR = 1.04 / math.sqrt(M)
_SPARSE_MAX = M // 8  # a sparse register costs ~8x a dense byte in a dict
_ALPHA_INF = 1 / (2 * math.log(2))


def hash64(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "little")


class HyperLogLog:
    """``add`` only remembers the id (a set insert); ids are hashed into registers when the
    sketch is next read, merged or saved, so an id seen many times between two reads (a
    person's events within a second) is hashed once."""

    __slots__ = ("dense", "pending", "sparse")

    def __init__(self) -> None:
        self.sparse: dict[int, int] | None = {}
        self.dense: bytearray | None = None
        self.pending: set[str] = set()

    def add(self, value: str) -> None:
        self.pending.add(value)

    def _drain(self) -> None:
        if not self.pending:
            return
        mask = (1 << Q) - 1
        for value in self.pending:
            h = hash64(value)
            self._set(h >> Q, Q - (h & mask).bit_length() + 1)
        self.pending = set()

    def _set(self, idx: int, rank: int) -> None:
        if self.dense is not None:
            self.dense[idx] = max(self.dense[idx], rank)
            return
        sparse = self.sparse
        if sparse.get(idx, 0) < rank:
            sparse[idx] = rank
            if len(sparse) > _SPARSE_MAX:
                self._densify()

    def _densify(self) -> None:
        dense = bytearray(M)
        for i, r in self.sparse.items():
            dense[i] = r
        self.dense, self.sparse = dense, None

    def merge(self, other: HyperLogLog) -> HyperLogLog:
        other._drain()
        if other.dense is not None:
            if self.dense is None:
                self._densify()
            self.dense = bytearray(map(max, self.dense, other.dense))
        else:
            for i, r in other.sparse.items():
                self._set(i, r)
        return self

    def registers(self) -> list[int]:
        self._drain()
        if self.dense is not None:
            return list(self.dense)
        regs = [0] * M
        for i, r in self.sparse.items():
            regs[i] = r
        return regs

    def estimate(self) -> float:
        self._drain()
        hist = [0] * (Q + 2)
        if self.dense is not None:
            for r in self.dense:
                hist[r] += 1
        else:
            for r in self.sparse.values():
                hist[r] += 1
            hist[0] = M - len(self.sparse)
        z = M * _tau(1 - hist[Q + 1] / M)
        for k in range(Q, 0, -1):
            z = 0.5 * (z + hist[k])
        z += M * _sigma(hist[0] / M)
        return _ALPHA_INF * M * M / z

    def count(self) -> int:
        return round(self.estimate())

    # -- serialisation: dense bytes, or the sparse pairs ------------------------------------

    def to_bytes(self) -> bytes:
        self._drain()
        if self.dense is not None:
            return bytes(self.dense)
        out = bytearray()
        for i, r in sorted(self.sparse.items()):
            out += i.to_bytes(2, "little") + bytes((r,))
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> HyperLogLog:
        hll = cls()
        if len(data) == M:
            hll.dense, hll.sparse = bytearray(data), None
        else:
            if len(data) % 3:
                raise ValueError(f"not a sketch: {len(data)} bytes is neither {M} (dense) nor a multiple of 3 (sparse)")
            hll.sparse = {int.from_bytes(data[j : j + 2], "little"): data[j + 2] for j in range(0, len(data), 3)}
        return hll


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        z_old = z
        z += x * y
        y += y
        if z == z_old:
            return z


def _tau(x: float) -> float:
    if x == 0.0 or x == 1.0:
        return 0.0
    y, z = 1.0, 1 - x
    while True:
        x = math.sqrt(x)
        z_old = z
        y *= 0.5
        z -= (1 - x) ** 2 * y
        if z == z_old:
            return z / 3
