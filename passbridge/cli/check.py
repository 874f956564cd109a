"""``passbridge check``, ``state`` and ``schema``: the site file without a service.

A site file is checked with a throwaway PIN key: nothing here keeps or
compares PIN hashes, and the real key lives in the serve's database.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from passbridge.cli.common import EXIT_USAGE


def _cmd_check(args: argparse.Namespace) -> int:
    from passbridge.site_file import load_site

    site = load_site(Path(args.site), pin_key=b"\0" * 32)
    print(
        f"{args.site}: ok: site {site.id} ({site.timezone.key}), {len(site.doors)} doors, "
        f"{len(site.users)} users, revision {site.revision}"
    )
    return 0


def _cmd_state(args: argparse.Namespace) -> int:
    from passbridge.clock import Moment
    from passbridge.core.engine import DoorCore
    from passbridge.site_file import load_site

    site = load_site(Path(args.site), pin_key=b"\0" * 32)
    if args.at is None:
        at = datetime.now(UTC)
    else:
        try:
            parsed = datetime.fromisoformat(args.at)
        except ValueError:
            print(
                f"error: --at {args.at!r}: expected an ISO 8601 time such as 2026-11-30T09:00",
                file=sys.stderr,
            )
            return EXIT_USAGE
        at = parsed.replace(tzinfo=site.timezone) if parsed.tzinfo is None else parsed
    core = DoorCore(site, pin_key=b"\0" * 32)
    if args.door not in site.doors:
        print(
            f"error: {args.site}: no door {args.door!r} (doors: {', '.join(site.doors)})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    resolved = core.door_state(args.door, Moment(at.astimezone(UTC), 0.0))
    local = at.astimezone(site.timezone).isoformat()
    print(f"{args.door} at {local}: {resolved.state.value} (set by {resolved.source})")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from passbridge.scenario.shape import file_schema

    print(json.dumps(file_schema(args.kind), indent=2))
    return 0


def register(commands: Any) -> None:
    check = commands.add_parser("check", help="validate a site file")
    check.add_argument("--site", required=True, metavar="FILE")
    check.set_defaults(func=_cmd_check)

    state = commands.add_parser("state", help="a door's resolved state and what set it")
    state.add_argument("--site", required=True, metavar="FILE")
    state.add_argument("--door", required=True)
    state.add_argument(
        "--at", help="ISO 8601 time; site-local when it has no offset (default: now)"
    )
    state.set_defaults(func=_cmd_state)

    schema = commands.add_parser(
        "schema", help="print the JSON Schema of site or scenario files (for editors)")
    schema.add_argument("kind", choices=("site", "scenario"))
    schema.set_defaults(func=_cmd_schema)
