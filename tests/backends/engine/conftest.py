from __future__ import annotations

import pytest
from convert.convert_engines import ENGINES, make_engine


def pytest_configure(config):
    config.addinivalue_line("markers", "spark: runs the Spark engine (PySpark in local[2] mode, Java 17)")


@pytest.fixture(params=ENGINES)
def engine(request, tmp_path, tmp_path_factory):
    if request.param == "spark":
        pytest.importorskip("pyspark", reason="the Spark engine needs pyspark: pip install 'beaconlake[spark]'")
        request.applymarker(pytest.mark.spark)
    e = make_engine(request.param, tmp_path, tmp_path_factory.getbasetemp() / "engines")
    yield e
    e.close()
