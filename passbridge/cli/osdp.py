"""``passbridge osdp ...``: wired OSDP readers.

``osdp install --port DEV --address N --door DOOR[:SIDE]`` gives a new
reader its secure channel base key (SCBK). A reader fresh from the factory
(or reset to it) is in install mode: it accepts the standard's default
install key (SCBK-D) for one secure session, in which the panel sends it a
fresh random key (osdp_KEYSET); the reader keeps that key and the install
key stops working. passbridge then proves the new key with a secure channel
of its own and only then keeps it, sealed, in the key store under that door
side, where ``serve --osdp`` finds it.

A door side's key is set once: installing again is refused (the reader
already has its key and no longer accepts the install key) unless
``--again`` says a new or factory-reset reader replaces it. The key itself
is never printed.

``osdp list`` shows which door sides have a reader key, and since when.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from passbridge.cli.common import DEFAULT_DB, EXIT_USAGE, open_store

EXIT_INSTALL_FAILED = 1
INSTALL_SECONDS = 30.0


def _door_side(text: str) -> tuple[str, str]:
    door, _, side = text.partition(":")
    if not door or side not in ("", "in", "out"):
        raise argparse.ArgumentTypeError(f"expected DOOR or DOOR:in or DOOR:out, not {text!r}")
    return door, side or "in"


def _address(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 126:
        raise argparse.ArgumentTypeError(f"an OSDP address is 0-126, not {text!r}")
    return int(text)


async def _comes_online_secure(port: str, reader: Any, *, baud: int, timeout: float) -> bool:
    """Whether ``reader`` (a PanelReader) comes online on ``port`` with a secure
    channel on its own key (never on SCBK-D) within ``timeout``. Online
    without one (a reader that refused the install key), a refused secure
    channel or silence are False."""
    from passbridge.adapters.osdp_panel import (
        LinkChanged,
        OsdpPanel,
        PanelEvent,
        SecureChannelRefused,
    )

    outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def event(e: PanelEvent) -> None:
        if not outcome.done() and (isinstance(e, SecureChannelRefused)
                                   or (isinstance(e, LinkChanged) and e.online)):
            outcome.set_result(isinstance(e, LinkChanged) and e.secure)

    panel = OsdpPanel(port, [reader], event, baud=baud)
    try:
        await panel.start()
        return await asyncio.wait_for(outcome, timeout)
    except TimeoutError:
        return False
    finally:
        await panel.stop()


async def install_reader(port: str, address: int, *, baud: int, timeout: float) -> bytes | None:
    """Set a fresh SCBK in the reader at ``address`` on ``port`` from the install
    key; the key once the reader proved it over a secure channel, else None."""
    from passbridge.adapters.keystore import new_osdp_key
    from passbridge.adapters.osdp_panel import PanelReader

    scbk = new_osdp_key()
    # libosdp sends the key (osdp_KEYSET) in a session on the install key,
    # then brings the reader online on the new key.
    if not await _comes_online_secure(port, PanelReader(address, scbk, install=True),
                                      baud=baud, timeout=timeout):
        return None
    # Prove it: a fresh panel that requires the secure channel on the new key.
    if not await _comes_online_secure(port, PanelReader(address, scbk), baud=baud,
                                      timeout=timeout):
        return None
    return scbk


def _install(args: argparse.Namespace) -> int:
    from passbridge.adapters.keystore import OsdpKeyExists
    from passbridge.adapters.osdp_panel import PanelUnavailable
    from passbridge.core.model import Side

    door, side_text = args.door
    side = Side(side_text)
    store = open_store(args.db)
    try:
        existing = store.osdp_key(door, side)
        if existing is not None and not args.again:
            print(f"error: door {door!r} side {side.value} already has an OSDP reader key "
                  f"(installed {existing.installed_at.isoformat(timespec='seconds')}); a reader "
                  "takes the install key once. Installing a new or factory-reset reader "
                  "there? Pass --again.", file=sys.stderr)
            return EXIT_USAGE
        try:
            scbk = asyncio.run(install_reader(args.port, args.address, baud=args.baud,
                                              timeout=args.timeout))
        except PanelUnavailable as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_INSTALL_FAILED
        if scbk is None:
            print(f"error: the reader at address {args.address} on {args.port} did not take a "
                  f"key within {args.timeout:g} s: is it wired, at that address and baud rate, "
                  "and in install mode (new, or reset to factory settings)? A reader that "
                  "already has a key refuses the install key.", file=sys.stderr)
            return EXIT_INSTALL_FAILED
        try:
            store.set_osdp_key(door, side, scbk, replace=args.again)
        except OsdpKeyExists as error:  # another install got there first
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
    finally:
        store.close()
    print(f"installed: the reader at address {args.address} on {args.port} has its own key "
          f"now, kept sealed in {args.db} for door {door} side {side.value}; serve it with "
          f"--osdp {args.port}:{args.address}={door}:{side.value}")
    return 0


def _list(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        keys = store.osdp_keys()
    finally:
        store.close()
    for key in keys:
        print(f"door={key.door}  side={key.side.value}  "
              f"installed={key.installed_at.isoformat(timespec='seconds')}")
    if not keys:
        print("no OSDP reader keys yet: passbridge osdp install --port DEV --address N "
              "--door DOOR[:SIDE]")
    return 0


def register(commands: Any) -> None:
    from passbridge.adapters.osdp_panel import BAUD_RATES, DEFAULT_BAUD

    osdp = commands.add_parser("osdp", help="wired OSDP readers: install a reader's key")
    osdp_commands = osdp.add_subparsers(dest="osdp_command", required=True)
    install = osdp_commands.add_parser(
        "install", help="give a new reader its own secure channel key (install mode, once)")
    install.add_argument("--port", required=True, metavar="DEV",
                         help="the reader's serial device, e.g. /dev/ttyUSB0")
    install.add_argument("--address", required=True, type=_address, metavar="N",
                         help="the reader's OSDP address (0-126)")
    install.add_argument("--door", required=True, type=_door_side, metavar="DOOR[:SIDE]",
                         help="the door side the reader serves (side in or out; default in)")
    install.add_argument("--baud", type=int, choices=BAUD_RATES, default=DEFAULT_BAUD,
                         help="the bus speed (default %(default)s)")
    install.add_argument("--db", default=str(DEFAULT_DB), metavar="PATH",
                         help=f"the serve's database, whose key store keeps the key "
                              f"(default {DEFAULT_DB})")
    install.add_argument("--again", action="store_true",
                         help="replace the door side's key: a new or factory-reset reader")
    install.add_argument("--timeout", type=float, default=INSTALL_SECONDS, metavar="SECONDS",
                         help="how long the reader may take (default %(default)g)")
    install.set_defaults(func=_install)
    listing = osdp_commands.add_parser("list", help="door sides with an OSDP reader key")
    listing.add_argument("--db", default=str(DEFAULT_DB), metavar="PATH")
    listing.set_defaults(func=_list)
