"""The ``passbridge`` command. Each area registers its own subcommands; this
module only parses and turns expected failures into clear messages."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from passbridge import audit_cli, keys_cli
from passbridge.adapters.keystore import KeyStoreError
from passbridge.errors import ConfigError
from passbridge.service import commands as service_commands

EXIT_USAGE = 2


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


def _cmd_scenario_run(args: argparse.Namespace) -> int:
    from passbridge.scenario.runner import run_files

    _warnings_only()
    return run_files(args.files, as_json=args.json)


def _warnings_only() -> None:
    """Tester output is the step lines: library chatter stays below WARNING.

    nfcpy sets its own loggers to INFO and bumble logs through the root
    logger (which installs a handler on first use), so without this every
    simulated NFC tap would print two lines on stderr.
    """
    root = logging.getLogger()
    if any(getattr(h, "passbridge_cli", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.passbridge_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="passbridge",
        description="Phones as door credentials: NFC, Bluetooth, Nearby and Remote unlock.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    scenario = commands.add_parser("scenario", help="run scenario files")
    scenario_commands = scenario.add_subparsers(dest="scenario_command", required=True)
    run = scenario_commands.add_parser("run", help="run scenarios and check their expectations")
    run.add_argument("files", nargs="+", metavar="FILE")
    run.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    run.set_defaults(func=_cmd_scenario_run)

    keys_cli.register(commands)
    audit_cli.register(commands)
    service_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except KeyStoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        # A file the command was pointed at: say which, never a traceback.
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
