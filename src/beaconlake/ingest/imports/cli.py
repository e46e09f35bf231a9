"""``beaconlake import --format segment|snowplow PATH...``: backfill the raw lake from archives.

Exit 0 when every line was imported or was already there, 1 when some were rejected (they are in
``lake/rejected`` with file, line and reason), 2 for a bad command line or config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from beaconlake import config


def cmd_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from beaconlake.ingest.imports.run import Importer

    settings = config.load(args.config)
    paths = [Path(p) for p in args.paths]
    total = sum(p.stat().st_size for p in paths if p.is_file())
    with tqdm(total=total, unit="B", unit_scale=True, desc="import", disable=args.no_progress, file=sys.stderr) as bar:
        importer = Importer(settings, args.format, args.tenant, progress=bar.update)
        summary = importer.run(paths)
    for line in summary.lines():
        print(line)
    return 1 if summary.rejected else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="backfill the raw lake from Segment / RudderStack or Snowplow archives")
    p.add_argument("--config", help=f"config file (default ./{config.DEFAULT_CONFIG_NAME})")
    p.add_argument("--format", required=True, choices=["segment", "snowplow"],
                   help="segment: JSON lines (gzip or not), as Segment's and RudderStack's S3 destinations write them; "
                        "snowplow: enriched events, TSV")
    p.add_argument("--tenant", help="the tenant whose events they are (Segment: needed when the config has several; "
                                    "Snowplow: only rows of this tenant's app ids)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_import)
