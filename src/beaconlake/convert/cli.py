"""The ``convert`` and ``query`` subcommands: ``register(subparsers)`` adds them to a parser.

    beaconlake convert [--config FILE] [--engine duckdb|spark] [--tenant ID ...] [--full] [--no-progress]
    beaconlake query [--config FILE] [--format table|csv|json] "SELECT ..."
"""

from __future__ import annotations

import argparse
import sys

from beaconlake import config
from beaconlake.backends.catalog.settings import CatalogSettings
from beaconlake.backends.engine.settings import ENGINE_TYPES, EngineSettings
from beaconlake.convert.settings import ConvertSettings, sections_of
from beaconlake.errors import ConfigError
from beaconlake.sections import type_of

# `beaconlake query --format`; convert.query.write renders each
FORMATS = ("table", "csv", "json")
# `beaconlake convert` converted what it could but moved unreadable raw files to quarantine/:
# distinct from 1 (crashed) and 2 (bad config or arguments) so cron and CI can tell an operator.
EXIT_QUARANTINED = 3


def load(path: str | None) -> tuple[config.Settings, tuple[ConvertSettings, EngineSettings, CatalogSettings]]:
    settings = config.load(path)
    return settings, sections_of(settings)


def cmd_convert(args: argparse.Namespace) -> int:
    from beaconlake.convert.run import convert

    settings, (convert_settings, engine, catalog) = load(args.config)
    if args.engine is not None and args.engine != type_of(engine):
        engine = ENGINE_TYPES[args.engine]()  # that engine's defaults: the configured one's do not apply
    known = {t.id for t in settings.tenants}
    for tenant in args.tenant or []:
        if tenant not in known:
            raise ConfigError(f"--tenant {tenant!r}: no such tenant in the config (tenants: {', '.join(sorted(known))})")
    summary = convert(
        settings, sections=(convert_settings, engine, catalog),
        tenants=set(args.tenant) if args.tenant else None, full=args.full, progress=not args.no_progress,
    )
    print(
        f"converted {summary.new_files} new raw file(s): {summary.events:,} events in {summary.days} tenant-day(s), "
        f"{summary.batches} batch(es) ({summary.incremental} incremental), {summary.seconds:.1f} s "
        f"({summary.events_per_sec:,.0f} events/s)"
    )
    if summary.quarantined:
        print(f"quarantined {len(summary.quarantined)} unreadable raw file(s), moved to quarantine/ in the lake "
              "beside a .reason.json each (the rest was converted):")
        for q in summary.quarantined:
            print(f"  {q.key}: {q.reason}")
        return EXIT_QUARANTINED
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from beaconlake.convert.query import run_query, write
    from beaconlake.convert.run import open_store

    settings, sections = load(args.config)
    store = open_store(settings, sections)
    write(run_query(store, args.sql, settings.data_dir), args.format, sys.stdout)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``convert`` and ``query`` to the ``beaconlake`` command's subparsers."""
    cfg_help = f"config file (default ./{config.DEFAULT_CONFIG_NAME})"
    p = subparsers.add_parser("convert", help="convert new raw lake files into the Iceberg tables (incremental)")
    p.add_argument("--config", help=cfg_help)
    p.add_argument("--engine", choices=sorted(ENGINE_TYPES), help="engine for this run instead of engine.type")
    p.add_argument("--tenant", action="append", metavar="ID", help="only this tenant (repeatable)")
    p.add_argument("--full", action="store_true", help="re-convert every raw file and rebuild the identity map")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    p.set_defaults(func=cmd_convert)

    p = subparsers.add_parser("query", help="run SQL over the converted tables with DuckDB")
    p.add_argument("sql", help='e.g. "SELECT session_date, count(*) FROM sessions GROUP BY 1 ORDER BY 1"')
    p.add_argument("--config", help=cfg_help)
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.set_defaults(func=cmd_query)
