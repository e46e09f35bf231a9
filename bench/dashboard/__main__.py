"""The dashboard's table views: planned reads against the whole-table read they replaced.

Simulates the demo's history (``beaconlake demo`` defaults: 150 people, 28 days, seed 7) into a
raw lake, converts it, and times each view over the tables in three setups:

- ``embedded``: the SQLite catalog and a local warehouse (the defaults);
- ``postgres``: the SQL catalog on PostgreSQL (``postgresql+psycopg://``), the warehouse local;
- ``postgres+s3``: the same catalog with the warehouse in S3 (moto's server on localhost): the
  tables copied there through pyiceberg (one file per partition, as convert writes them), the
  catalog given pyiceberg's own ``s3.*`` properties.

For each view: the median server time over ``--runs`` of the planned read (what the dashboard
does now), of the old whole-table read with its per-worker views kept (``whole, kept``: its
steady state between refreshes) and with the views built for the request (``whole, built``:
what every refresh, every 30 s per worker, cost), and the files and bytes each planned (Parquet
sizes from the manifests: the most a reader fetches; projection and row-group pruning fetch less).

    python bench/dashboard                       # starts PostgreSQL (Debian's) and moto itself
    python bench/dashboard --people 60 --days 14 --runs 5 --setups embedded
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

DAY_MS = 86_400_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres():
    """A throwaway PostgreSQL from the Debian binaries; yields a SQLAlchemy URL."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        sys.exit("PostgreSQL is missing: apt-get install postgresql (or --setups embedded)")
    bindir = os.path.dirname(found[-1])
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="bl-bench-pg-"))  # its own: the server's user must reach it
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        pw = pwd.getpwnam("postgres")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = str(folder / "data"), free_port()
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1",
                    "-l", str(folder / "log"), "-w", "start"], check=True, stdout=subprocess.DEVNULL)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def moto():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def make_settings(root: Path, catalog_uri: str | None):
    from beaconlake import config

    raw = {"data_dir": str(root / "data"), "spool": {"min_free_disk_bytes": 0},
           "tenants": [{"id": "demo", "write_key": "wk_benchbenchbenchbench", "read_key": "rk_benchbenchbenchbench",
                        "sequences": [
                            {"name": "considered_then_added", "within_secs": 600, "steps": [
                                {"name": "product_view", "where": [{"field": "props.category", "op": "exists"}]},
                                {"name": "product_view", "same": ["props.category"]}, {"name": "add_to_cart"}]},
                            {"name": "browsed_to_purchase", "within_secs": 3600, "steps": [
                                {"name": "page_view"}, {"name": "add_to_cart"}, {"name": "purchase"}]}]}]}
    if catalog_uri:
        raw["catalog"] = {"type": "sql", "uri": catalog_uri}
    return config.parse(raw, root, environ={})


def copy_to_s3(settings, catalog):
    """The tables of ``settings`` in ``catalog`` (its warehouse on S3), one file per partition."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from beaconlake.convert import tables
    from beaconlake.convert.catalog import TABLE_PROPERTIES, TableStore
    from beaconlake.convert.run import open_store
    from beaconlake.convert.tables import iceberg_schema, partition_spec

    source = open_store(settings)
    catalog.create_namespace_if_not_exists("beaconlake")
    for tdef in tables.ALL:
        schema = iceberg_schema(tdef.arrow)
        target = catalog.create_table(f"beaconlake.{tdef.name}", schema=schema, partition_spec=partition_spec(tdef, schema),
                                      properties=TABLE_PROPERTIES)
        data = source.table(tdef.name).scan().to_arrow().cast(target.schema().as_arrow())
        if not data.num_rows:
            continue
        keys = ["tenant"] + ([tdef.date_column] if tdef.date_column else []) if tdef.name != "converted_files" else []
        paths = []
        for group in (data.group_by(keys).aggregate([]).to_pylist() if keys else [{}]):
            mask = None
            for key, value in group.items():
                m = pc.equal(data[key], value)
                mask = m if mask is None else pc.and_(mask, m)
            path = f"{target.location()}/data/{uuid.uuid4()}.parquet"
            with target.io.new_output(path).create() as out:
                pq.write_table(data.filter(mask) if mask is not None else data, out)
            paths.append(path)
        target.add_files(paths)
    return TableStore(catalog, "beaconlake")


def views(settings, now_ms: int, who: str):
    from beaconlake.serve.dashboard import funnel, people, traffic

    tenant = settings.tenants[0]
    week = (now_ms - 7 * DAY_MS, now_ms)
    hours = settings.convert.max_session_hours
    return {
        "traffic, 7 days": lambda t: traffic.traffic(t, tenant.id, *week, "day", hours),
        "traffic, 1 day": lambda t: traffic.traffic(t, tenant.id, now_ms - DAY_MS, now_ms, "hour", hours),
        "sequences, 7 days": lambda t: funnel.funnels(t, tenant, *week),
        "people search": lambda t: people.search(t, tenant.id, "", 50),
        "a person": lambda t: people.person(t, tenant.id, who, 20),
    }


class Kept:
    """The old dashboard's steady state: whole-table views built once and kept."""

    def __init__(self, whole) -> None:
        self._cm = whole.view()  # held: its exit would close the view
        self._view = self._cm.__enter__()

    def view(self):
        view = self._view

        class Same:
            def __enter__(self):
                return view

            def __exit__(self, *exc):
                return False

        return Same()


def measure(name: str, settings, store, now_ms: int, runs: int) -> list[dict]:
    from beaconlake.serve.dashboard.tables import Tables, WholeTables

    planned, whole = Tables(settings, store), WholeTables(settings, store)
    from beaconlake.serve.dashboard import people

    kept = Kept(whole)
    out = []
    who = people.search(planned, settings.tenants[0].id, "user", 1)["people"][0]["person_id"]  # a signed-in regular
    for view, fn in views(settings, now_ms, who).items():
        assert fn(planned) == fn(whole), f"{name} / {view}: the planned read answers differently"
        times: dict[str, list[float]] = {"planned": [], "whole, kept": [], "whole, built": []}
        for _ in range(runs):
            for label, t in (("planned", planned), ("whole, kept", kept), ("whole, built", whole)):
                t0 = time.perf_counter()
                fn(t)
                times[label].append((time.perf_counter() - t0) * 1000)
        fn(planned)
        p = planned.last_stats
        fn(whole)
        w = whole.last_stats
        out.append({"setup": name, "view": view, **{k: statistics.median(v) for k, v in times.items()},
                    "files": p.files, "bytes": p.bytes, "whole_files": w.files, "whole_bytes": w.bytes})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=150)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--setups", default="embedded,postgres,postgres+s3")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()
    setups = args.setups.split(",")
    unknown = set(setups) - {"embedded", "postgres", "postgres+s3"}
    if unknown:
        ap.error(f"--setups: unknown {', '.join(sorted(unknown))}; choose among embedded, postgres, postgres+s3")

    from beaconlake.convert.run import convert
    from beaconlake.simulate import visits, write_raw_lake

    root = Path(tempfile.mkdtemp(prefix="bl-bench-dash-"))
    end = (int(time.time() * 1000) // DAY_MS) * DAY_MS
    start = end - args.days * DAY_MS
    rows: list[dict] = []
    try:
        embedded = make_settings(root / "embedded", None)
        t0 = time.perf_counter()
        events = write_raw_lake(embedded, visits(args.people, args.days, args.seed, start))
        convert(embedded, progress=False)
        print(f"{events:,} events of {args.people} people over {args.days} days, converted in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        if "embedded" in setups:
            rows += measure("embedded", embedded, None, end, args.runs)
        if "postgres" in setups or "postgres+s3" in setups:
            with postgres() as url:
                if "postgres" in setups:
                    pg = make_settings(root / "embedded", url)  # the same raw lake, converted into the PG catalog
                    shutil.rmtree(root / "embedded" / "data" / "warehouse")
                    convert(pg, progress=False)
                    rows += measure("postgres", pg, None, end, args.runs)
                if "postgres+s3" in setups:
                    import boto3
                    from pyiceberg.catalog.sql import SqlCatalog

                    with moto() as endpoint:
                        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k",
                                     aws_secret_access_key="s").create_bucket(Bucket="warehouse")
                        catalog = SqlCatalog("s3copy", uri=url, warehouse="s3://warehouse/tables", **{
                            "s3.endpoint": endpoint, "s3.region": "us-east-1", "s3.access-key-id": "k",
                            "s3.secret-access-key": "s"})
                        source = make_settings(root / "embedded", url if "postgres" in setups else None)
                        rows += measure("postgres+s3", embedded, copy_to_s3(source, catalog), end, args.runs)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nmedians of {args.runs} runs, ms; files and MB the planned read planned, of the whole tables'")
    print(f"{'setup':<12} {'view':<18} {'planned':>8} {'whole, kept':>12} {'whole, built':>13} {'files':>11} {'MB':>13}")
    for r in rows:
        print(f"{r['setup']:<12} {r['view']:<18} {r['planned']:>8.0f} {r['whole, kept']:>12.0f} {r['whole, built']:>13.0f} "
              f"{r['files']:>4} of {r['whole_files']:<4} {r['bytes'] / 1e6:>5.2f} of {r['whole_bytes'] / 1e6:<5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
