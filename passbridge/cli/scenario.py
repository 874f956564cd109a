"""``passbridge scenario run``: scenario files against a service of their own."""

from __future__ import annotations

import argparse
import logging
from typing import Any


def _cmd_scenario_run(args: argparse.Namespace) -> int:
    from passbridge.scenario.runner import run_files

    _warnings_only()
    return run_files(args.files, as_json=args.json, via=args.via)


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


def register(commands: Any) -> None:
    scenario = commands.add_parser("scenario", help="run scenario files")
    scenario_commands = scenario.add_subparsers(dest="scenario_command", required=True)
    run = scenario_commands.add_parser("run", help="run scenarios and check their expectations")
    run.add_argument("files", nargs="+", metavar="FILE")
    run.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    run.add_argument("--via", choices=["direct", "osdp"], default="direct",
                     help="how card and pin steps enter: straight into the wired devices' "
                          "path (direct, the default), or through a simulated OSDP reader "
                          "with keypad at each door side, over a pty and the service's own "
                          "OSDP Control Panel (osdp)")
    run.set_defaults(func=_cmd_scenario_run)
