import pytest
from realtime.servers import fresh_postgres_db

from beaconlake.backends.highlevel.sqlite import SqliteHighLevelIndex


@pytest.fixture(params=["sqlite", "postgres"])
def index(request, tmp_path):
    if request.param == "postgres":
        from beaconlake.backends.highlevel.postgres import PostgresHighLevelIndex

        idx = PostgresHighLevelIndex(fresh_postgres_db())
    else:
        idx = SqliteHighLevelIndex(tmp_path / "hl.db")
    yield idx
    idx.close()
