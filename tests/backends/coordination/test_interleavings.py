"""Fencing under any interleaving: several simulated nodes acquire, renew, release, check and
write through one real PostgreSQL while their leases expire (a node paused past its ttl,
simulated by moving the lease's expiry into the past on the server). Hypothesis picks the
interleavings; a model says what each call must do, and the invariants are checked on what the
server actually stored:

- tokens only grow, and each acquisition's token is the previous one's plus one;
- a fenced write succeeds exactly when its lease is the live one: at most one node's writes
  succeed per token, and the stored value is always the last successful write;
- ``check()`` passes exactly when the lease is live.
"""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from realtime.servers import fresh_postgres_db

from beaconlake.backends.coordination import JOBS_LEASE, LeaseLost

NODES = 3
TTL = 60.0  # long: expiry only happens when the test says so

op = st.one_of(
    st.tuples(st.just("acquire"), st.integers(0, NODES - 1)),
    st.tuples(st.just("renew"), st.integers(0, NODES - 1)),
    st.tuples(st.just("release"), st.integers(0, NODES - 1)),
    st.tuples(st.just("check"), st.integers(0, NODES - 1)),
    st.tuples(st.just("put"), st.integers(0, NODES - 1)),
    st.tuples(st.just("expire"), st.just(0)),
)


@pytest.fixture(scope="module")
def cluster():
    from beaconlake.backends.coordination.postgres import PostgresCoordination

    dsn = fresh_postgres_db()
    nodes = [PostgresCoordination(dsn, f"node-{i}") for i in range(NODES)]
    admin = psycopg.connect(dsn, autocommit=True)
    nodes[0].get("warm-up")  # the schema exists before the first truncate
    yield nodes, admin
    admin.close()
    for n in nodes:
        n.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=1, max_size=40))
def test_at_most_one_holder_writes_per_token_and_tokens_only_grow(cluster, ops):
    nodes, admin = cluster
    admin.execute("truncate coord_leases, coord_kv")
    leases = [None] * NODES  # each node's newest lease handle
    live = None  # the model: (node, token) of the live lease, or None
    last_token = 0
    last_write = None
    writers: dict[int, set[int]] = {}
    for step, (kind, i) in enumerate(ops):
        lease = leases[i]
        mine = lease is not None and live == (i, lease.token)
        if kind == "acquire":
            got = nodes[i].acquire(JOBS_LEASE, TTL)
            assert (got is not None) == (live is None), (step, ops)
            if got is not None:
                assert got.token == last_token + 1  # tokens only grow, one per new holder
                last_token, live, leases[i] = got.token, (i, got.token), got
        elif kind == "renew" and lease is not None:
            assert lease.renew() == mine, (step, ops)
        elif kind == "release" and lease is not None:
            lease.release()
            if mine:
                live = None
        elif kind == "check" and lease is not None:
            if mine:
                lease.check()
            else:
                with pytest.raises(LeaseLost):
                    lease.check()
        elif kind == "put" and lease is not None:
            value = {"node": i, "token": lease.token, "step": step}
            if mine:
                nodes[i].put("checkpoint", value, lease)
                last_write = value
                writers.setdefault(lease.token, set()).add(i)
            else:
                with pytest.raises(LeaseLost):
                    nodes[i].put("checkpoint", value, lease)
        elif kind == "expire" and live is not None:  # the holder is paused past its ttl
            admin.execute("update coord_leases set expires_at = clock_timestamp() - interval '1 second'")
            live = None
        stored = nodes[(i + 1) % NODES].get("checkpoint")
        assert stored == last_write, (step, ops)
    assert all(len(w) == 1 for w in writers.values())
    [(token,)] = admin.execute("select token from coord_leases").fetchall() or [(0,)]
    assert token == last_token
