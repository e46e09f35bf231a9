"""The cluster the tests run on (conftest.py's ``cluster`` fixture, once per module): moto S3,
Redis and PostgreSQL from the test process; two collector nodes and two jobs nodes, each in its
own mount namespace (``namespace.py``) with the same data path on a private tmpfs; and a
single-node reference (``role = "all"``, local everything) that gets the same batches at the
same moments.

Settings the cluster nodes use (issue 13): ``[node] id/role``, ``[coordination] type =
"postgres"`` (``url``), ``convert.warehouse = "s3://..."`` with ``[catalog] type = "sql"`` on
PostgreSQL (``postgresql+psycopg://``), ``[storage] type = "s3"``, ``[counters] type = "redis"``,
``[highlevel]`` and ``[profiles]`` on PostgreSQL. Until the PostgreSQL coordination backend
exists the module skips, saying so; ``BEACONLAKE_CLUSTER_AS_IS=1`` runs it anyway with the local
(per-node) coordination, which reproduces what issue 13 reports of the current code.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lakehouse import S3_KEYS, Warehouse
from namespace import Node
from support import free_port, moto_s3, write_config
from workload import SEQUENCE

AS_IS = os.environ.get("BEACONLAKE_CLUSTER_AS_IS") == "1"
KEYS = {"write_key": "wk_cluster_" + "w" * 20, "read_key": "rk_cluster_" + "r" * 20,
        "admin_key": "ak_cluster_" + "a" * 20}
SERVER_ADMIN = "sk_cluster_" + "s" * 20


@dataclass
class Cluster:
    collectors: list[Node]
    jobs: list[Node]
    reference: Node
    warehouse: Warehouse
    coordination_url: str
    tmp: Path
    notes: dict = field(default_factory=dict)  # what earlier tests of the module measured

    @property
    def nodes(self) -> list[Node]:
        return [*self.collectors, *self.jobs]


def _prerequisites() -> None:
    for exe in ("unshare", "nsenter", "mount"):
        if shutil.which(exe) is None:
            pytest.skip(f"{exe} is missing: apt-get install util-linux mount")
    if os.geteuid() != 0:
        pytest.skip("the cluster test mounts a tmpfs in each node's mount namespace: it runs as root")
    if not AS_IS and importlib.util.find_spec("beaconlake.backends.coordination.postgres") is None:
        pytest.skip("needs [coordination] type = 'postgres' (issue 13, wip-coord); "
                    "BEACONLAKE_CLUSTER_AS_IS=1 runs the cluster on per-node coordination")


def _pg_url(dsn_params: dict[str, str], db: str, driver: str = "postgresql") -> str:
    return f"{driver}://{dsn_params['user']}@{dsn_params['host']}:{dsn_params['port']}/{db}"


def _databases(pg) -> dict[str, dict[str, str]]:
    import psycopg

    params = dict(part.split("=", 1) for part in pg.dsn.split())
    out = {}
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        for db in ("coordination", "catalog", "highlevel", "profiles"):
            conn.execute(f"create database {db}")
            out[db] = {**params, "dbname": db}
    return out


def _node(tmp: Path, name: str, data_path: Path, overrides: dict, ready_path: str = "/readyz") -> Node:
    folder = tmp / name
    folder.mkdir()
    port = free_port()
    path = write_config(folder, port, {
        "data_dir": str(data_path),
        "server": {"admin_key": SERVER_ADMIN},
        "realtime": {"browser_grace_secs": 1},
        "schedule": {"convert_interval_mins": 0.1, "first_run_delay_secs": 1},
        "tenant": {**KEYS, "sequences": [SEQUENCE]},
        **overrides,
    })
    return Node(name, port, path, data_path, folder / "up.log", ready_path=ready_path)


@contextmanager
def started(tmp: Path) -> Iterator[Cluster]:
    """Services, then the four cluster nodes and the reference; everything stopped (nodes killed) at the end."""
    _prerequisites()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    from faults.fault_services import PostgresServer, RedisServer

    data_path = tmp / "node-data"  # the one data path of every node: a private tmpfs in each
    data_path.mkdir()
    redis, pg = RedisServer(), PostgresServer()
    nodes: list[Node] = []
    try:
        with moto_s3() as endpoint:
            dbs = _databases(pg)
            catalog_uri = _pg_url(dbs["catalog"], "catalog", "postgresql+psycopg")
            warehouse = Warehouse(endpoint, "warehouse", "tables", catalog_uri)
            s3 = warehouse.s3()
            for bucket in ("lake", "warehouse"):
                s3.create_bucket(Bucket=bucket)
            coordination_url = _pg_url(dbs["coordination"], "coordination")
            shared = {
                "storage": {"type": "s3", "bucket": "lake", "prefix": "lake", "endpoint_url": endpoint, **S3_KEYS},
                "counters": {"type": "redis", "url": redis.url, "key_prefix": "cluster"},
                "highlevel": {"type": "postgres", "dsn": " ".join(f"{k}={v}" for k, v in dbs["highlevel"].items())},
                "profiles": {"type": "postgres", "dsn": " ".join(f"{k}={v}" for k, v in dbs["profiles"].items())},
                "catalog": {"type": "sql", "uri": warehouse.catalog_uri},
                "convert": {"warehouse": warehouse.uri},
                "coordination": {"type": "local"} if AS_IS else {"type": "postgres", "url": coordination_url},
                # one detector on the active jobs node over every node's raw files
                "realtime": {"browser_grace_secs": 1, **({} if AS_IS else {"sequences_from": "lake", "lake_lateness_secs": 60,
                                                                            "lake_poll_interval_secs": 1})},
            }
            collectors = [_node(tmp, name, data_path, {**shared, "node": {"id": name, "role": "collector"}})
                          for name in ("collector-1", "collector-2")]
            # a jobs node serves the read API and dashboard too, but takes no events: /healthz, not /readyz
            jobs = [_node(tmp, name, data_path, {**shared, "node": {"id": name, "role": "jobs"}}, ready_path="/healthz")
                    for name in ("jobs-1", "jobs-2")]
            reference = _node(tmp, "reference", data_path, {"node": {"id": "reference", "role": "all"}})
            for node in (*collectors, *jobs, reference):
                nodes.append(node.start())
            yield Cluster(collectors, jobs, reference, warehouse, coordination_url, tmp)
    finally:
        for node in nodes:
            node.kill()
        redis.close()
        pg.close()
