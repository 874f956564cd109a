"""``passbridge keys ...`` and ``passbridge phone ...``: the key store by hand.

Private keys are written only to files the caller names (mode 0600) or
kept in the database; nothing private is printed, except a device key's
secret when the operator asks for it by name (``keys device list|rotate
--show-secret``, to provision a reader or keypad).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from passbridge.adapters.keystore import DeviceKey, DeviceKind, KeyStoreError, SqliteKeyStore
from passbridge.core.model import Side
from passbridge.core.tokens import (
    BadKey,
    generate_private_key,
    load_private_key_pem,
    p256_point,
    private_key_to_pem,
    public_key_to_pem,
)
from passbridge.ids import file_for_id

DEFAULT_DB = Path("passbridge-data") / "passbridge.sqlite3"
EXIT_ERROR = 2


def open_store(db: str) -> SqliteKeyStore:
    path = Path(db)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise KeyStoreError(
            f"cannot create the folder of key store {db}: {error.strerror or error}"
        ) from None
    return SqliteKeyStore(path)


def write_private(path: Path, text: str) -> None:
    """A private key file readable by its owner only, never overwritten by accident."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _keys_show(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        reader = store.reader_identity()
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
            _print_phone(phone)
    finally:
        store.close()
    return 0


def _keys_reader_public(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        point = store.reader_identity().public_key
    finally:
        store.close()
    print(point.hex())
    return 0


def _keys_backend(args: argparse.Namespace) -> int:
    """A key pair for an app backend: private key to a file, trust entry printed."""
    out = Path(args.out)
    try:
        # The id names files in --out and nowhere else (passbridge.ids).
        private_path = file_for_id(out, args.id, ".key.pem", what="--id")
        public_path = file_for_id(out, args.id, ".pub.pem", what="--id")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    key = generate_private_key(args.alg)
    try:
        write_private(private_path, private_key_to_pem(key))
    except FileExistsError:
        print(f"error: {private_path} exists; not overwriting a key", file=sys.stderr)
        return EXIT_ERROR
    public_path.write_text(public_key_to_pem(key))
    print(f"wrote {private_path} (private, 0600) and {public_path}")
    print("add to the site file under trust.backends:")
    print(f"  - {{id: {args.id}, alg: {args.alg}, public_key_file: {public_path}}}")
    return 0


def _print_phone(phone: Any) -> None:
    state = "revoked" if phone.revoked else "active"
    key = phone.public_key.hex()[:18]
    print(f"  {phone.credential_id}  user={phone.user_id}  {state}  key={key}...")


def _phone_enroll(args: argparse.Namespace) -> int:
    if (args.public_key is None) == (args.new_key_out is None):
        print("error: give either --public-key HEX|FILE or --new-key-out FILE", file=sys.stderr)
        return EXIT_ERROR
    if args.new_key_out is not None:
        key = generate_private_key("ES256")
        try:
            write_private(Path(args.new_key_out), private_key_to_pem(key))
        except FileExistsError:
            print(f"error: {args.new_key_out} exists; not overwriting a key", file=sys.stderr)
            return EXIT_ERROR
        point = p256_point(key.public_key())  # type: ignore[arg-type]
    else:
        try:
            point = _read_public_point(args.public_key)
        except (ValueError, BadKey, OSError) as error:
            print(f"error: --public-key: {error}", file=sys.stderr)
            return EXIT_ERROR
    store = open_store(args.db)
    try:
        phone = store.enroll_phone(args.phone, args.user, point)
    except (ValueError, KeyStoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        store.close()
    print(f"enrolled {phone.credential_id} for user {phone.user_id}")
    if args.new_key_out is not None:
        print(f"phone private key written to {args.new_key_out} (0600)")
    return 0


def _read_public_point(text: str) -> bytes:
    """A 65-byte uncompressed P-256 point, from hex or from a PEM file."""
    candidate = Path(text)
    if candidate.exists():
        from passbridge.core.tokens import load_public_key_pem

        public = load_public_key_pem(candidate.read_text(), "ES256")
        return p256_point(public)  # type: ignore[arg-type]
    point = bytes.fromhex(text)
    if len(point) != 65 or point[0] != 0x04:
        raise ValueError("expected a 65-byte uncompressed P-256 point (04...) or a PEM file")
    return point


def _phone_revoke(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        revoked = store.revoke_phone(args.phone)
    finally:
        store.close()
    if not revoked:
        print(f"error: no active phone {args.phone!r}", file=sys.stderr)
        return EXIT_ERROR
    print(f"revoked {args.phone}: its taps are now denied unknown_credential")
    return 0


def _phone_list(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        for phone in store.phones():
            _print_phone(phone)
    finally:
        store.close()
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
        return EXIT_ERROR
    print("rotated: the old key no longer works; the new one:")
    _print_device_key(key, args.show_secret)
    return 0


def load_phone_key(path: str) -> Any:
    """A phone's private key file as written by ``phone enroll --new-key-out``."""
    return load_private_key_pem(Path(path).read_text(), "ES256")


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

    phone = commands.add_parser("phone", help="enrol, revoke and list phones")
    phone_commands = phone.add_subparsers(dest="phone_command", required=True)
    enroll = phone_commands.add_parser("enroll", help="bind a phone's public key to a user")
    enroll.add_argument("--db", default=str(DEFAULT_DB))
    enroll.add_argument(
        "--phone", required=True, help="credential id (the phone id in the site file)"
    )
    enroll.add_argument("--user", required=True)
    enroll.add_argument("--public-key", help="65-byte point as hex, or a PEM public key file")
    enroll.add_argument(
        "--new-key-out",
        metavar="FILE",
        help="make a key pair (a test phone) and write its private key here",
    )
    enroll.set_defaults(func=_phone_enroll)
    revoke = phone_commands.add_parser("revoke", help="revoke a phone")
    revoke.add_argument("--db", default=str(DEFAULT_DB))
    revoke.add_argument("--phone", required=True)
    revoke.set_defaults(func=_phone_revoke)
    listing = phone_commands.add_parser("list", help="enrolled phones")
    listing.add_argument("--db", default=str(DEFAULT_DB))
    listing.set_defaults(func=_phone_list)
