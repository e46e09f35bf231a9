"""The ``forget`` subcommand: ``register(subparsers)`` adds it to a parser.

    beaconlake forget [--config FILE] --tenant ID PERSON_ID ...    record an erasure, carry it out now
    beaconlake forget [--config FILE] --pending                    carry out every pending request now
"""

from __future__ import annotations

import argparse

from beaconlake import config
from beaconlake.errors import ConfigError


def cmd_forget(args: argparse.Namespace) -> int:
    from beaconlake.backends.storage import open_storage
    from beaconlake.lake.privacy import id_hasher
    from beaconlake.privacy.forget import carry_out
    from beaconlake.privacy.requests import request

    settings = config.load(args.config)
    if args.pending and (args.ids or args.tenant):
        raise ConfigError("--pending carries out the recorded requests: give it no --tenant and no ids")
    if not args.pending:
        if not args.tenant or not args.ids:
            raise ConfigError("name the tenant and the person: beaconlake forget --tenant ID PERSON_ID ...")
        storage = open_storage(settings.storage)
        req = request(storage, id_hasher(storage, settings.privacy.id_salt or None), settings, args.tenant,
                      list(args.ids), via="cli")
        print(f"erasure {req.id} recorded for tenant {args.tenant} ({len(req.ids)} id(s)); carrying it out "
              f"(after {settings.privacy.suppression_refresh_secs:g} s, once every deliverer drops the person's events)")
    result = carry_out(settings, {args.tenant} if args.tenant else None, wait=True)
    for c in result.carried:
        counts = ", ".join(f"{k} {v}" for k, v in c.removed.items())
        print(f"erasure {c.request.id} ({c.request.tenant}) carried out: {c.ids_found} id(s) of the person, {counts}")
    if result.damaged_segments:
        print(f"{len(result.damaged_segments)} damaged spool segment(s) could not be scrubbed (delivery parks them in "
              f"spool/corrupt/; remove them by hand): {', '.join(result.damaged_segments)}")
    for req, count in result.too_wide:
        print(f"erasure {req.id} ({req.tenant}) NOT carried out: its ids link {count} ids, over "
              f"privacy.max_person_ids = {settings.privacy.max_person_ids} (a shared user id?); it stays pending: "
              "ask again with the exact ids, or raise the limit")
    if not result.carried and not result.too_wide:
        print("no pending erasure request")
    return 1 if result.damaged_segments or result.too_wide else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("forget", help="erase a person everywhere (lake, tables, stores, spool), now")
    p.add_argument("ids", nargs="*", metavar="PERSON_ID", help="any anonymous id, user id or person id of the person")
    p.add_argument("--config", help=f"config file (default ./{config.DEFAULT_CONFIG_NAME})")
    p.add_argument("--tenant", metavar="ID", help="the tenant the person belongs to")
    p.add_argument("--pending", action="store_true", help="carry out the requests recorded over HTTP, now")
    p.set_defaults(func=cmd_forget)
