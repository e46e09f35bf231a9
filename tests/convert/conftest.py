from __future__ import annotations

import shutil

import pytest
from convert_engines import ENGINES
from convert_lake import Lake, tenant


@pytest.fixture(scope="session")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(params=ENGINES)
def engine_kind(request):
    if request.param == "spark":
        pytest.importorskip("pyspark", reason="the Spark engine needs pyspark: pip install 'beaconlake[spark]'")
        request.applymarker(pytest.mark.spark)  # `-m "not spark"` leaves Spark out
    return request.param


def pytest_configure(config):
    config.addinivalue_line("markers", "spark: runs the Spark engine (PySpark in local[2] mode, Java 17)")


_BAKED: dict[str, Lake] = {}


@pytest.fixture(scope="session")
def baked(tmp_path_factory, scratch):
    """The scenario streams and a random stream, converted once per engine (a lake per engine),
    then a small delivery converted incrementally (increment.py) on top."""
    from rawlake import write_raw
    from scenarios import random_events, scenario_events, shop_tenant_config, small_delivery

    events, copies = scenario_events()
    more, more_copies = random_events()
    source = tmp_path_factory.mktemp("baked-raw")
    write_raw(source, events + more, "seg-0001")
    write_raw(source, copies + more_copies, "seg-0002")
    wave = tmp_path_factory.mktemp("baked-wave")
    write_raw(wave, small_delivery(more), "seg-0003")

    def get(kind: str) -> Lake:
        if kind not in _BAKED:
            if kind == "spark":
                pytest.importorskip("pyspark", reason="the Spark engine needs pyspark: pip install 'beaconlake[spark]'")
            root = tmp_path_factory.mktemp(f"baked-{kind}")
            lake = Lake(root, kind, scratch, tenants=[tenant("shop", **shop_tenant_config()), tenant("blog")],
                        convert_cfg={"event_bucket_raw_kb": 16})  # several buckets a day
            shutil.copytree(source, lake.lake)  # both engines read the very same files
            lake.summary = lake.convert()
            shutil.copytree(wave, lake.lake, dirs_exist_ok=True)
            lake.increment = lake.convert()
            _BAKED[kind] = lake
        return _BAKED[kind]

    return get
