"""The erasure proof with the profile store and the high-level index on PostgreSQL: no row of any
table of the database mentions the person afterwards, and, after a checkpoint, no byte of the
database's own files (its tables and indexes, rewritten by VACUUM FULL) holds them either. The
server's write-ahead log is not searched: it keeps the old pages until its segments are recycled
(docs/privacy.md says so)."""

from __future__ import annotations

from pathlib import Path

import pytest
from privacy_search import hits, local_files
from privacy_world import make

from beaconlake.privacy.forget import carry_out

pytestmark = pytest.mark.slow


def _database_files(dsn: str) -> dict[str, bytes]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("checkpoint")
        data = c.execute("show data_directory").fetchone()[0]
        oid = c.execute("select oid from pg_database where datname = current_database()").fetchone()[0]
    return local_files(Path(data) / "base" / str(oid))


def _rows_naming(dsn: str, needle: str) -> list[str]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        names = [r[0] for r in c.execute("select tablename from pg_tables where schemaname = 'public'")]
        return [n for n in names if c.execute(f"select count(*) from {n} t where t::text like %s",
                                              (f"%{needle}%",)).fetchone()[0]]


def test_an_erased_person_is_nowhere_in_postgresql(tmp_path):
    from realtime.servers import fresh_postgres_db

    dsn = fresh_postgres_db()
    shop = make(tmp_path, {"profiles": {"type": "postgres", "dsn": dsn}, "highlevel": {"type": "postgres", "dsn": dsn}})
    try:
        needles = shop.p_ids
        assert {"profiles", "profile_ids", "high_level_events", "identities"} <= {
            t for n in needles for t in _rows_naming(dsn, n)}
        assert hits(_database_files(dsn), needles)  # the bytes are there before: the search can see them

        r = shop.client.post("/v1/erasures", json={"person": shop.p_anon2}, headers=shop.admin())
        assert r.status_code == 202, r.text
        [carried] = carry_out(shop.settings).carried
        assert carried.ids_found == 3 and carried.removed["profiles"] == 1 and carried.removed["highlevel_index"] >= 1

        assert [t for n in [*needles, shop.marker] for t in _rows_naming(dsn, n)] == []
        assert hits(_database_files(dsn), [*needles, shop.marker]) == []
        assert hits(local_files(tmp_path / "data"), [*needles, shop.marker]) == []
        assert all(_rows_naming(dsn, o) for o in shop.others)  # the others are all still there
    finally:
        shop.close()
