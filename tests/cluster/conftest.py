"""The ``cluster`` fixture: one cluster per test module (deployment.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from deployment import Cluster, started


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    with started(tmp_path_factory.mktemp("cluster")) as running:
        yield running
