import pytest
from analyze_lake import SimLake


@pytest.fixture(scope="session")
def shop(tmp_path_factory):
    """The default simulation (every persona, four weeks), converted and analyzed once."""
    lake = SimLake(tmp_path_factory.mktemp("analyze-shop"), people=250, days=28, seed=7)
    lake.convert()
    lake.summary = lake.analyze()
    store = lake.profiles()
    lake.docs = [store.get("shop", pid) for pid in store.person_ids("shop")]
    store.close()
    return lake


def pytest_configure(config):
    config.addinivalue_line("markers", "spark: runs the Spark engine (PySpark in local[2] mode, Java 17)")
