"""``passbridge console-link``: a single-use sign-in link to the browser console.

The link is minted in the database a running ``passbridge serve`` uses
(``--db``), which redeems it; only its keyed hash is stored there
(service/one_time.py). With ``--site`` the user is checked to be an
enabled site admin first; the service checks again when the link is
used, so a link for anybody else never starts a session.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from passbridge.cli.common import DEFAULT_DB, EXIT_USAGE, open_store

DEFAULT_URL = "http://127.0.0.1:8080"


def _minutes(text: str) -> float:
    if not text.isdigit() or not 1 <= int(text) <= 60:
        raise argparse.ArgumentTypeError(f"expected whole minutes 1-60: {text!r}")
    return int(text) * 60.0


def _console_link(args: argparse.Namespace) -> int:
    from passbridge.service.one_time import enabled_site_admin, mint_sign_in_link
    from passbridge.site_file import load_site

    store = open_store(args.db)
    try:
        if args.site is not None:
            site = load_site(Path(args.site), pin_key=store.pin_key())
            if not enabled_site_admin(site, args.user):
                print(f"error: --user: {args.user!r} is not an enabled site admin in "
                      f"{args.site}", file=sys.stderr)
                return EXIT_USAGE
        url, expires = mint_sign_in_link(store, args.user, issued_by="cli", base=args.url,
                                         now=datetime.now(UTC), seconds=args.minutes)
    finally:
        store.close()
    print(url)
    print(f"single use, valid until {expires.isoformat(timespec='seconds')}"
          f"{'' if args.site else '; the service checks the user is a site admin'}",
          file=sys.stderr)
    return 0


def register(commands: Any) -> None:
    link = commands.add_parser(
        "console-link", help="print a single-use sign-in link to the browser console")
    link.add_argument("--user", required=True, help="a site admin's user id")
    link.add_argument("--site", metavar="FILE",
                      help="check the user is an enabled site admin in this site file first")
    link.add_argument("--db", default=str(DEFAULT_DB), metavar="PATH",
                      help=f"the database the service uses (default {DEFAULT_DB})")
    link.add_argument("--url", default=DEFAULT_URL, metavar="BASE",
                      help=f"the service's address as the browser reaches it "
                           f"(default {DEFAULT_URL})")
    link.add_argument("--minutes", type=_minutes, default=5 * 60.0, metavar="N",
                      help="how long the link stays valid (default 5)")
    link.set_defaults(func=_console_link)
