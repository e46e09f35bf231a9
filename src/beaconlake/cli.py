"""The ``beaconlake`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from beaconlake import __version__, config
from beaconlake.errors import BeaconlakeError


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a whole number, got {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port must be between 1 and 65535, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def cmd_init(args: argparse.Namespace) -> int:
    from beaconlake.starter import write_starter

    path = write_starter(Path.cwd(), port=args.port or 8080, force=args.force)
    settings = config.load(path)
    tenant = settings.tenants[0]
    print(f"wrote {path}")
    print(f"  tenant    {tenant.id}")
    print(f"  write key {tenant.write_key}  (public: put it in your pages' script tag)")
    print(f"  read key  {tenant.read_key}  (secret)")
    print(f"  admin key {tenant.admin_key}  (secret: also runs convert + analyze for the tenant)")
    print("start the pipeline with: beaconlake up")
    return 0


def _load(args: argparse.Namespace) -> config.Settings:
    settings = config.load(args.config)
    if getattr(args, "port", None):
        settings.server.port = args.port
    if getattr(args, "host", None):
        settings.server.host = args.host
    if getattr(args, "workers", None):
        settings.server.workers = args.workers
    if getattr(args, "role", None):
        settings.node.role = args.role
        config.check_node(settings, "--role")
    return settings


def cmd_up(args: argparse.Namespace) -> int:
    from beaconlake import up

    return up.run(_load(args))


def cmd_deliver(args: argparse.Namespace) -> int:
    """Deliver whatever the spool holds, once, and exit (e.g. after an unclean shutdown).

    Exit 0: everything was delivered. Exit 1: segments are left (the lake storage kept failing
    for ``delivery.drain_timeout_secs``) or were parked in ``spool/corrupt/`` by this run."""
    from beaconlake import up
    from beaconlake.ingest import spool

    settings = _load(args)
    spool.lock_spool(settings.spool_path)
    spool.recover_orphans(settings.spool_path)
    d = up.build_deliverer(settings)  # with the realtime consumer, as `up` runs it
    try:
        d.drain()
    finally:
        d.close()
    left = len(spool.sealed_segments(settings.spool_path)) + len(spool.open_segments(settings.spool_path))
    print(f"delivered; {left} segment(s) left in the spool")
    if d.parked:
        print(f"{len(d.parked)} segment(s) parked in {settings.spool_path / spool.CORRUPT} (what could be read is "
              f"delivered; each has a .json report of what could not): {', '.join(p.name for p in d.parked)}")
    return 1 if left or d.parked else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="beaconlake", description="Self-hostable customer-behaviour analytics pipeline.")
    parser.add_argument("--version", action="version", version=f"beaconlake {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="write a starter beaconlake.toml here, with a demo tenant and fresh keys")
    p.add_argument("--port", type=_port, help="collector port to write in the config (default 8080)")
    p.add_argument("--force", action="store_true", help="overwrite an existing beaconlake.toml")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("up", help="run the collector and lake delivery")
    p.add_argument("--config", help=f"config file (default ./{config.DEFAULT_CONFIG_NAME})")
    p.add_argument("--port", type=_port, help="listen on this port instead of server.port")
    p.add_argument("--host", help="listen on this address instead of server.host")
    p.add_argument("--workers", type=_positive, help="server worker processes instead of server.workers")
    p.add_argument("--role", choices=["all", "collector", "jobs"],
                   help="what this node runs instead of node.role: all (one machine), collector (ingest and "
                        "delivery) or jobs (scheduler; one active across the deployment)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("deliver", help="deliver what the spool holds to the lake, then exit")
    p.add_argument("--config", help=f"config file (default ./{config.DEFAULT_CONFIG_NAME})")
    p.set_defaults(func=cmd_deliver)

    from beaconlake.convert.cli import register as register_convert

    register_convert(sub)
    from beaconlake.analyze.cli import register as register_analyze

    register_analyze(sub)
    from beaconlake.ingest.imports.cli import register as register_import

    register_import(sub)
    from beaconlake.privacy.cli import register as register_forget

    register_forget(sub)
    from beaconlake.demo.cli import register as register_demo

    register_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from beaconlake.logs import setup

    setup(args.log_level)
    try:
        return args.func(args)
    except BeaconlakeError as exc:
        print(f"beaconlake: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
