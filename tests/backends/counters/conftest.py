import pytest
from realtime.servers import fresh_redis_db

from beaconlake.backends.counters.memory import MemoryCounters


@pytest.fixture(params=["memory", "redis"])
def make_counters(request, tmp_path):
    """make_counters(role) -> a Counters handle; two calls of the memory kind act as two
    processes sharing one partials folder, two of the redis kind share one Redis."""
    made = []
    if request.param == "redis":
        from beaconlake.backends.counters.redis import RedisCounters

        url, prefix = fresh_redis_db()

        def make(role="p"):
            made.append(RedisCounters(url, prefix, 3_600_000))
            return made[-1]
    else:

        def make(role="p"):
            made.append(MemoryCounters(tmp_path / "partials", role))
            return made[-1]

    make.kind = request.param
    yield make
    for c in made:
        c.close()
