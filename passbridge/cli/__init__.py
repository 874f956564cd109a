"""The ``passbridge`` command. Each command group registers its own
subcommands from its module here (check.py: check, state, schema; osdp.py;
scenario.py; keys.py; phone.py; audit.py; serve.py; console.py; sim.py; hub.py); this module
only parses and turns expected failures into clear messages."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from passbridge.adapters.keystore import KeyStoreError
from passbridge.cli import audit, check, console, hub, keys, osdp, phone, scenario, serve, sim
from passbridge.cli.common import EXIT_USAGE
from passbridge.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="passbridge",
        description="Phones as door credentials: NFC, Bluetooth, Nearby and Remote unlock.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The order of `passbridge --help`.
    for group in (check, scenario, keys, phone, osdp, audit, serve, console, sim, hub):
        group.register(commands)
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
