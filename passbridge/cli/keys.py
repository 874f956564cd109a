"""``passbridge keys ...``: the reader, bridge, backend and device keys by hand.

Private keys are written only to files the caller names (mode 0600) or
kept in the database; nothing private is printed, except a device key's
secret when the operator asks for it by name (``keys device list|rotate
--show-secret``, to provision a reader or keypad).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from passbridge.adapters.keystore import DeviceKey, DeviceKind
from passbridge.cli.common import DEFAULT_DB, EXIT_USAGE, open_store, write_private
from passbridge.cli.phone import print_phone
from passbridge.core.model import Side
from passbridge.core.tokens import generate_private_key, private_key_to_pem, public_key_to_pem
from passbridge.ids import file_for_id


def _keys_show(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        reader = store.reader_key()
        bridge = store.bridge_key()
        print(f"key store: {args.db}")
        print(f"reader group id: {reader.group_id.hex()}  sub id: {reader.sub_id.hex()}")
        print(f"reader public key (phones trust this): {reader.public_key.hex()}")
        print(f"in-process bridge: {bridge.id} ({bridge.alg})")
        for kind in ("backend", "bridge"):
            for key in store.trusted_keys(kind):
                print(f"trusted {kind}: {key.id} ({key.alg})")
        phones = store.phones()
        print(f"phones enrolled: {len(phones)}")
        for phone in phones:
            print_phone(phone)
    finally:
        store.close()
    return 0


def _keys_reader_public(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        point = store.reader_key().public_key
    finally:
        store.close()
    print(point.hex())
    return 0


def write_key_pair(out: Path, key_id: str, alg: str) -> tuple[Path, Path, str] | None:
    """A new key pair as ``<id>.key.pem`` (0600, never overwritten) and
    ``<id>.pub.pem`` in ``out``: the paths and the public PEM, or None after
    printing why not (app backends here, fleet admin keys in cli/hub.py)."""
    try:
        # The id names files in --out and nowhere else (passbridge.ids).
        private_path = file_for_id(out, key_id, ".key.pem", what="--id")
        public_path = file_for_id(out, key_id, ".pub.pem", what="--id")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    key = generate_private_key(alg)
    try:
        write_private(private_path, private_key_to_pem(key))
    except FileExistsError:
        print(f"error: {private_path} exists; not overwriting a key", file=sys.stderr)
        return None
    public_pem = public_key_to_pem(key)
    public_path.write_text(public_pem)
    return private_path, public_path, public_pem


def _keys_backend(args: argparse.Namespace) -> int:
    """A key pair for an app backend: private key to a file, trust entry printed."""
    written = write_key_pair(Path(args.out), args.id, args.alg)
    if written is None:
        return EXIT_USAGE
    private_path, public_path, _ = written
    print(f"wrote {private_path} (private, 0600) and {public_path}")
    print("add to the site file under trust.backends:")
    print(f"  - {{id: {args.id}, alg: {args.alg}, public_key_file: {public_path}}}")
    return 0


def _print_device_key(key: DeviceKey, show_secret: bool) -> None:
    line = (f"{key.id}  door={key.door}  side={key.side.value}  kind={key.kind.value}  "
            f"created={key.created_at.isoformat(timespec='seconds')}")
    print(f"{line}  key={key.token}" if show_secret else line)


def _device_list(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        keys = store.device_keys()
    finally:
        store.close()
    for key in keys:
        _print_device_key(key, args.show_secret)
    if not keys:
        print("no device keys yet: passbridge serve makes them on its first start")
    return 0


def _device_rotate(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        key = store.rotate_device_key((args.door, Side(args.side), DeviceKind(args.kind)))
    finally:
        store.close()
    if key is None:
        print(f"error: no device key for door {args.door!r} side {args.side} kind {args.kind} "
              f"in {args.db}", file=sys.stderr)
        return EXIT_USAGE
    print("rotated: the old key no longer works; the new one:")
    _print_device_key(key, args.show_secret)
    return 0


def register(commands: Any) -> None:
    keys = commands.add_parser("keys", help="reader, bridge and backend keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    show = keys_commands.add_parser("show", help="public keys, trust and phones in the key store")
    show.add_argument("--db", default=str(DEFAULT_DB))
    show.set_defaults(func=_keys_show)
    reader = keys_commands.add_parser(
        "reader-public", help="the reader public key phones trust (hex)"
    )
    reader.add_argument("--db", default=str(DEFAULT_DB))
    reader.set_defaults(func=_keys_reader_public)
    backend = keys_commands.add_parser("backend", help="make an app-backend key pair")
    backend.add_argument("--out", required=True, metavar="DIR")
    backend.add_argument("--id", default="app-backend")
    backend.add_argument("--alg", default="ES256", choices=["ES256", "EdDSA"])
    backend.set_defaults(func=_keys_backend)
    device = keys_commands.add_parser("device", help="wired reader and keypad keys")
    device_commands = device.add_subparsers(dest="device_command", required=True)
    show_help = "also print the key itself (id.secret), to provision the device"
    device_list = device_commands.add_parser(
        "list", help="each wired device's key: id, door, side, kind (no secret by default)")
    device_list.add_argument("--db", default=str(DEFAULT_DB))
    device_list.add_argument("--show-secret", action="store_true", help=show_help)
    device_list.set_defaults(func=_device_list)
    rotate = device_commands.add_parser(
        "rotate", help="replace a device's key; the old one stops working at once")
    rotate.add_argument("--db", default=str(DEFAULT_DB))
    rotate.add_argument("--door", required=True)
    rotate.add_argument("--side", choices=[s.value for s in Side], default="in")
    rotate.add_argument("--kind", choices=[k.value for k in DeviceKind], required=True)
    rotate.add_argument("--show-secret", action="store_true", help=show_help)
    rotate.set_defaults(func=_device_rotate)
