import pytest
from realtime.servers import fresh_postgres_db

from beaconlake.backends.profiles.sqlite import SqliteProfileStore


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "postgres":
        from beaconlake.backends.profiles.postgres import PostgresProfileStore

        s = PostgresProfileStore(fresh_postgres_db())
    else:
        s = SqliteProfileStore(tmp_path / "profiles.db")
    yield s
    s.close()
