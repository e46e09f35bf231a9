"""The ``analyze`` subcommand: ``register(subparsers)`` adds it to a parser.

    beaconlake analyze [--config FILE] [--tenant ID ...] [--full] [--no-progress]
"""

from __future__ import annotations

import argparse
import sys

from beaconlake import config
from beaconlake.errors import ConfigError


def cmd_analyze(args: argparse.Namespace) -> int:
    from beaconlake.analyze.run import analyze

    settings = config.load(args.config)
    known = {t.id for t in settings.tenants}
    for tenant in args.tenant or []:
        if tenant not in known:
            raise ConfigError(f"--tenant {tenant!r}: no such tenant in the config (tenants: {', '.join(sorted(known))})")
    summary = analyze(settings, tenants=set(args.tenant) if args.tenant else None,
                      progress=not args.no_progress and sys.stderr.isatty(), full=args.full)
    for t in summary.tenants:
        auc = f"{t.auc:.3f}" if t.auc is not None else f"none ({t.propensity})" if t.propensity else "none"
        segs = f"{t.segments} (silhouette {t.silhouette:.3f}, refit)" if t.refit and t.segments else "kept" if not t.refit else "none"
        print(f"{t.tenant}: {t.updated} profile(s) updated, {t.removed} merged, {t.people} in all; "
              f"segments {segs}; propensity ROC AUC {auc}")
    print(f"analyzed {len(summary.tenants)} tenant(s) in {summary.seconds:.1f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``analyze`` to the ``beaconlake`` command's subparsers."""
    p = subparsers.add_parser("analyze", help="update customer profiles from the converted tables (incremental)")
    p.add_argument("--config", help=f"config file (default ./{config.DEFAULT_CONFIG_NAME})")
    p.add_argument("--tenant", action="append", metavar="ID", help="only this tenant (repeatable)")
    p.add_argument("--full", action="store_true", help="recompute every profile and refit the segment model")
    p.add_argument("--no-progress", action="store_true", help="no per-tenant lines on stderr")
    p.set_defaults(func=cmd_analyze)
