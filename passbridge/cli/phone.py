"""``passbridge phone ...``: enrol, revoke and list phones in the key store.

A phone's private key is written only to the file the caller names (mode
0600, ``enroll --new-key-out``, for a test phone); only public keys are
printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from passbridge.adapters.keystore import KeyStoreError
from passbridge.cli.common import DEFAULT_DB, EXIT_USAGE, open_store, write_private
from passbridge.core.tokens import (
    BadKey,
    generate_private_key,
    load_public_key_pem,
    private_key_to_pem,
)
from passbridge.p256 import public_key_bytes


def print_phone(phone: Any) -> None:
    state = "revoked" if phone.revoked else "active"
    key = phone.public_key.hex()[:18]
    print(f"  {phone.credential_id}  user={phone.user_id}  {state}  key={key}...")


def _phone_enroll(args: argparse.Namespace) -> int:
    if (args.public_key is None) == (args.new_key_out is None):
        print("error: give either --public-key HEX|FILE or --new-key-out FILE", file=sys.stderr)
        return EXIT_USAGE
    if args.new_key_out is not None:
        key = generate_private_key("ES256")
        try:
            write_private(Path(args.new_key_out), private_key_to_pem(key))
        except FileExistsError:
            print(f"error: {args.new_key_out} exists; not overwriting a key", file=sys.stderr)
            return EXIT_USAGE
        point = public_key_bytes(key.public_key())  # type: ignore[arg-type]
    else:
        try:
            point = _read_public_point(args.public_key)
        except (ValueError, BadKey, OSError) as error:
            print(f"error: --public-key: {error}", file=sys.stderr)
            return EXIT_USAGE
    store = open_store(args.db)
    try:
        phone = store.enroll_phone(args.phone, args.user, point)
    except (ValueError, KeyStoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
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
        public = load_public_key_pem(candidate.read_text(), "ES256")
        return public_key_bytes(public)  # type: ignore[arg-type]
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
        return EXIT_USAGE
    print(f"revoked {args.phone}: its taps are now denied unknown_credential")
    return 0


def _phone_list(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        for phone in store.phones():
            print_phone(phone)
    finally:
        store.close()
    return 0


def register(commands: Any) -> None:
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
