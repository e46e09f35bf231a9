"""Counters in Redis: every process writes to the same keys, so there is nothing to merge.

Keys (``P`` is ``counters.key_prefix``)::

    P:s:<tenant>:<name>:<group>:<minute>   hash: count, and <prop>:n|s|q|lo|hi per numeric prop
    P:h:<tenant>:<name>:<group>:<minute>   Redis HyperLogLog of anonymous ids (PFADD)
    P:w:<tenant>:<name>                    sorted set of "<group>\\x1f<minute>", scored by minute
    P:series                               sorted set of "<tenant>\\x1f<name>", scored by last minute

A batch is one round trip (a Lua script), so sums, min/max and the index stay consistent
without a read-modify-write race between processes. Sums are doubles written with 17
significant digits (``%.17g``), not ``HINCRBYFLOAT``, whose fixed-point result keeps 17 digits
after the point only: 1e-44 would add up to 0, and a mean fall outside [min, max]. Distinct counts of an hour or a day are
``PFCOUNT`` over the union of its minutes' HyperLogLogs: Redis's HLL has 16,384 registers,
a standard error of 0.81%, the same as the memory backend's sketch. Window keys expire after
``realtime.retention_hours``. Keys are built in the script, so use a single Redis (not a
cluster) for now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import redis

from beaconlake.backends.counters.base import Capabilities, Counters, row
from beaconlake.backends.counters.settings import RedisCountersSettings
from beaconlake.backends.counters.sketch import STANDARD_ERROR
from beaconlake.backends.counters.windows import Agg, WindowKey, bucket_of, rollup
from beaconlake.errors import BackendUnavailable

SEP = "\x1f"
TIMEOUT_SECS = 2.0  # a Redis on the network answers in milliseconds: one that takes this long is stuck
_PARTS = {"n": 0, "s": 1, "q": 2, "lo": 3, "hi": 4}
_ADD = """
local ups = cjson.decode(ARGV[1])
local ttl = tonumber(ARGV[2])
for _, u in ipairs(ups) do
  local h, hll, idx, member, minute, count, ids, nums = u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8]
  redis.call('HINCRBY', h, 'count', count)
  if #ids > 0 then redis.call('PFADD', hll, unpack(ids)) end
  for prop, a in pairs(nums) do
    redis.call('HINCRBY', h, prop .. ':n', a[1])
    local cur = redis.call('HMGET', h, prop .. ':s', prop .. ':q', prop .. ':lo', prop .. ':hi')
    local lo, hi = tonumber(cur[3]), tonumber(cur[4])
    if not lo or lo > a[4] then lo = a[4] end
    if not hi or hi < a[5] then hi = a[5] end
    redis.call('HSET', h, prop .. ':s', string.format('%.17g', (tonumber(cur[1]) or 0) + a[2]),
               prop .. ':q', string.format('%.17g', (tonumber(cur[2]) or 0) + a[3]),
               prop .. ':lo', string.format('%.17g', lo), prop .. ':hi', string.format('%.17g', hi))
  end
  redis.call('PEXPIRE', h, ttl)
  redis.call('PEXPIRE', hll, ttl)
  redis.call('ZADD', idx, minute, member)
  redis.call('ZADD', ARGV[3], 'GT', minute, u[9])
end
return #ups
"""


class KeySet(set):
    """The HyperLogLog keys a bucket is made of: merging is a union, counting is PFCOUNT."""

    def merge(self, other: KeySet) -> KeySet:
        self.update(other)
        return self


class RedisCounters(Counters):
    standard_error = STANDARD_ERROR
    # Every write is a round trip to the shared Redis: nothing waits to be published, and a
    # writer's housekeeping (prune) runs every few seconds.
    capabilities = Capabilities(per_process_partials=False, in_process=False, flush_interval_secs=5.0)

    @classmethod
    def from_settings(cls, settings: RedisCountersSettings, *, role: str, state_dir: Path,
                      retention_ms: int) -> RedisCounters:
        return cls(settings.url, settings.key_prefix, retention_ms)

    def __init__(self, url: str, prefix: str, retention_ms: int) -> None:
        # explicit: a hung Redis must fail a call, not hold a thread for ever (redis-py < 6 waits)
        self.r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=TIMEOUT_SECS,
                                      socket_connect_timeout=TIMEOUT_SECS)
        self.prefix = prefix
        self.retention_ms = retention_ms
        self._add = self.r.register_script(_ADD)
        self._json = msgspec.json.Encoder()

    def _key(self, kind: str, k: tuple) -> str:
        tenant, name, group, minute = k
        return f"{self.prefix}:{kind}:{tenant}:{name}:{group}:{minute}"

    def add(self, batch: dict[WindowKey, Agg]) -> None:
        if not batch:
            return
        ups = [
            (
                self._key("s", k), self._key("h", k), f"{self.prefix}:w:{k[0]}:{k[1]}",
                f"{k[2]}{SEP}{k[3]}", k[3], a.count, sorted(a.sketch), a.nums or {}, f"{k[0]}{SEP}{k[1]}",
            )
            for k, a in batch.items()
        ]
        # An empty Lua table encodes as [] and decodes fine; nums {} must stay an object.
        self._add(args=[self._json.encode(ups), self.retention_ms, f"{self.prefix}:series"])

    def _windows(self, tenant: str, name: str, lo: int, end_ms: int) -> dict[WindowKey, Agg]:
        members = self.r.zrangebyscore(f"{self.prefix}:w:{tenant}:{name}", lo, f"({end_ms}")
        keys = []
        for m in members:
            group, minute = m.rsplit(SEP, 1)
            keys.append(WindowKey(tenant, name, group, int(minute)))
        pipe = self.r.pipeline(transaction=False)
        for k in keys:
            pipe.hgetall(self._key("s", k))
        out = {}
        for k, h in zip(keys, pipe.execute()):
            if not h:
                continue  # expired
            nums: dict[str, list[float]] = {}
            for field, v in h.items():
                if field == "count":
                    continue
                prop, part = field.rsplit(":", 1)
                nums.setdefault(prop, [0, 0.0, 0.0, 0.0, 0.0])[_PARTS[part]] = float(v)
            out[k] = Agg(KeySet({self._key("h", k)}), int(h.get("count", 0)), nums)
        return out

    def query(self, tenant: str, name: str, start_ms: int, end_ms: int, by: str, grouped: bool) -> list[dict[str, Any]]:
        try:
            return self._query(tenant, name, start_ms, end_ms, by, grouped)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable(f"Redis (counters.url) cannot be reached: {exc}") from exc

    def _query(self, tenant: str, name: str, start_ms: int, end_ms: int, by: str, grouped: bool) -> list[dict[str, Any]]:
        windows = self._windows(tenant, name, bucket_of(start_ms, by), end_ms)
        buckets = sorted(rollup(windows, by, grouped, KeySet).items())
        pipe = self.r.pipeline(transaction=False)
        for _, agg in buckets:
            pipe.pfcount(*sorted(agg.sketch))
        return [row(s, g, a, int(n)) for ((s, g), a), n in zip(buckets, pipe.execute())]

    def series(self, start_ms: int, end_ms: int) -> set[tuple[str, str]]:
        # scored by the latest minute, so this finds every series written since start_ms
        found = self.r.zrangebyscore(f"{self.prefix}:series", start_ms, "+inf")
        return {tuple(m.split(SEP, 1)) for m in found}  # type: ignore[misc]

    def prune(self, before_ms: int) -> None:
        pipe = self.r.pipeline(transaction=False)  # two round trips, however many series
        for m in self.r.zrange(f"{self.prefix}:series", 0, -1):
            tenant, name = m.split(SEP, 1)
            pipe.zremrangebyscore(f"{self.prefix}:w:{tenant}:{name}", "-inf", f"({before_ms}")
        pipe.zremrangebyscore(f"{self.prefix}:series", "-inf", f"({before_ms}")
        pipe.execute()

    def close(self) -> None:
        self.r.close()
