"""``passbridge sim ...``: tester commands against a running service.

Each command stands in for one device or phone (a badge reader, a keypad,
an app backend, a simulated phone at a reader or radio) and prints the
decision it got. Refused or unreachable: one line on stderr, exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from passbridge.cli.common import DEFAULT_DB

EXIT_SIM_REFUSED = 1


def _device_key(args: argparse.Namespace, door: str, side: str, kind: str) -> str:
    """The key of the device the command stands in for: ``--device-key``,
    PASSBRIDGE_DEVICE_KEY, ``--device-key-file``, else the door side's key
    from the key store of ``--db`` (the serve's database; the same default)."""
    from passbridge.adapters.keystore import KeyStoreError, SqliteKeyStore
    from passbridge.service.sim_client import SimError

    if args.device_key:
        return str(args.device_key)
    env = os.environ.get("PASSBRIDGE_DEVICE_KEY")
    if env:
        return env
    if args.device_key_file:
        path = Path(args.device_key_file)
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SimError(f"cannot read --device-key-file {path}: {exc.strerror or exc}"
                           ) from exc
    db = Path(args.db)
    if not db.is_file():
        raise SimError(f"no device key: no database {db} (give the serve's --db, --device-key "
                       "or PASSBRIDGE_DEVICE_KEY)")
    try:
        store = SqliteKeyStore(db)
        try:
            keys = store.device_keys()
        finally:
            store.close()
    except KeyStoreError as exc:
        raise SimError(f"no device key: {exc}") from exc
    for key in keys:
        if (key.door, key.side.value, key.kind.value) == (door, side, kind):
            return key.token
    raise SimError(f"no device key for the {kind} of door {door!r} side {side} in {db} "
                   "(serve makes one per wired device of its site)")


def _print_decision(decision: dict[str, Any], as_json: bool) -> None:
    from passbridge.service.sim_client import describe

    print(json.dumps(decision, indent=2) if as_json else describe(decision))


def _run_sim(args: argparse.Namespace) -> int:
    from passbridge.service import sim_client
    from passbridge.service.sim_client import SimError

    base = args.url.rstrip("/")
    try:
        if args.cacert:
            sim_client.trust_ca_file(Path(args.cacert))
        if args.sim_command == "remote":
            decision = asyncio.run(_sim_remote(base, args))
        else:
            kind = "keypad" if args.sim_command == "pin" else "reader"
            device_key = _device_key(args, args.door, args.side, kind)
            if args.sim_command == "card":
                decision = asyncio.run(
                    sim_client.card(base, args.door, args.number, args.side, device_key))
            elif args.sim_command == "pin":
                decision = asyncio.run(
                    sim_client.pin(base, args.door, args.code, args.side, device_key))
            elif args.sim_command == "nfc":
                decision = asyncio.run(
                    sim_client.nfc(base, args.door, args.phone, args.side, device_key))
            elif args.sim_command == "ble":
                decision = asyncio.run(sim_client.ble(
                    base, args.door, args.phone, args.side, args.rssi, device_key))
            else:
                from passbridge.sim.air import SIM_PHONES_DIR, phone_key_path

                rssi = None if args.rssi == "none" else int(args.rssi)
                try:
                    key_file = (Path(args.phone_key) if args.phone_key else
                                phone_key_path(Path(args.db).parent / SIM_PHONES_DIR, args.phone))
                except ValueError as exc:
                    raise SimError(str(exc)) from exc
                decision = asyncio.run(sim_client.nearby(
                    base, args.door, args.phone, rssi, key_file, args.side, device_key))
    except SimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SIM_REFUSED
    _print_decision(decision, args.json)
    return 0


async def _sim_remote(base: str, args: argparse.Namespace) -> dict[str, Any]:
    from passbridge.service import sim_client

    key, alg = sim_client.load_backend_key(Path(args.key))
    if args.via_hub and not args.site_id:
        raise sim_client.SimError("--via-hub needs --site-id (the hub forwards to that site)")
    site = args.site_id or await sim_client.site_id(base)
    token = sim_client.backend_token(
        key, alg, backend=args.backend, site=site, user=args.user, door=args.door,
        side=args.side, now=time.time(),
    )
    return await sim_client.remote(base, args.door, token,
                                   hub_site=site if args.via_hub else None)


def register(commands: Any) -> None:
    sim = commands.add_parser("sim", help="tester commands against a running service")
    sim.add_argument("--url", default="http://127.0.0.1:8080")
    sim.add_argument("--cacert", metavar="FILE",
                     help="verify an https service against this CA certificate (PEM) "
                          "instead of the system's CAs")
    sim.add_argument("--json", action="store_true", help="print the whole decision as JSON")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True, metavar="ACTION")

    def key_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=str(DEFAULT_DB), metavar="PATH",
                       help="the serve's database, whose key store holds the device keys "
                            f"(default {DEFAULT_DB})")
        p.add_argument("--device-key", help="the device key (or PASSBRIDGE_DEVICE_KEY; "
                                            "default: the door side's key from --db)")
        p.add_argument("--device-key-file", metavar="FILE", help="a file holding the device key")

    def device_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--door", required=True)
        p.add_argument("--side", choices=("in", "out"), default="in")
        key_args(p)

    card = sim_commands.add_parser(
        "card", help="a badge read at a door (through its simulated OSDP reader under "
                     "serve --simulate, else the wired reader's HTTP route)")
    card.add_argument("--number", required=True)
    device_args(card)
    pin = sim_commands.add_parser(
        "pin", help="an entry code on a door's keypad (its simulated OSDP keypad under "
                    "serve --simulate, else the keypad's HTTP route)")
    pin.add_argument("--code", required=True)
    device_args(pin)
    remote = sim_commands.add_parser("remote", help="a remote unlock, signed as an app backend")
    remote.add_argument("--key", required=True, metavar="FILE", help="the backend's private key")
    remote.add_argument("--backend", required=True, help="the backend's id in the site's trust")
    remote.add_argument("--user", required=True)
    remote.add_argument("--door", required=True)
    remote.add_argument("--side", choices=("in", "out"), default="in")
    remote.add_argument("--site-id", help="the site id (default: asked from /healthz)")
    remote.add_argument("--via-hub", action="store_true",
                        help="--url is a fleet hub (passbridge hub): it forwards the unlock to "
                             "site --site-id over NATS and answers the site's decision")
    def phone_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--phone", required=True, help="a phone id of the site file")
        p.add_argument("--door", required=True)
        p.add_argument("--side", choices=("in", "out"), default="in",
                       help="the door side whose reader or radio the phone is at")
        key_args(p)

    nfc = sim_commands.add_parser("nfc", help="a simulated phone taps the door's NFC reader")
    phone_args(nfc)
    ble = sim_commands.add_parser("ble", help="a Bluetooth unlock from a simulated phone")
    phone_args(ble)
    ble.add_argument("--rssi", type=int, default=-50, help="dBm the reader hears (default -50)")
    nearby = sim_commands.add_parser(
        "nearby", help="the phone advertises, then asks for a nearby unlock")
    phone_args(nearby)
    nearby.add_argument("--rssi", default="-70",
                        help="dBm the bridge hears, or 'none' for not seen (default -70)")
    nearby.add_argument("--phone-key", metavar="FILE",
                        help="the phone's private key (default: sim-phones/ beside --db)")
    sim.set_defaults(func=_run_sim)
