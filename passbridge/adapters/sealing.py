"""Secrets at rest are sealed: AES-256-GCM under a sealing key kept apart
from the database.

The key store's database holds the reader's and the bridge's private keys,
the PIN key and the FAST persistent keys. Sealed, a copy of that file (a
backup, a support bundle) gives none of them away; the sealing key lives in
its own 0600 file beside the database, or comes from the environment
(``PASSBRIDGE_SEALING_KEY``, 64 hex digits) so an operator can keep it on
another volume or in a secrets manager. Each sealed value is bound to its
name (the AES-GCM associated data), so a value cannot be moved to another
slot of the store.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from passbridge.errors import PassbridgeError

SEALING_KEY_ENV = "PASSBRIDGE_SEALING_KEY"
SEALING_KEY_BYTES = 32
_PREFIX = b"pbseal1:"
_NONCE_BYTES = 12


class SealError(PassbridgeError, RuntimeError):
    """A sealed value cannot be opened (wrong sealing key, or tampered)."""


def sealing_key_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".sealing-key")


def load_or_create_sealing_key(db_path: Path) -> bytes:
    """The environment's key if set, else the key file beside the database
    (made, 0600, on first use)."""
    from_env = os.environ.get(SEALING_KEY_ENV)
    if from_env:
        try:
            key = bytes.fromhex(from_env.strip())
        except ValueError:
            key = b""
        if len(key) != SEALING_KEY_BYTES:
            raise SealError(f"{SEALING_KEY_ENV} must be {2 * SEALING_KEY_BYTES} hex digits")
        return key
    path = sealing_key_path(db_path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != SEALING_KEY_BYTES:
            raise SealError(f"sealing key file {path} is damaged") from None
        return key
    key = secrets.token_bytes(SEALING_KEY_BYTES)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != SEALING_KEY_BYTES:
            raise ValueError("a sealing key is 32 bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Sealer(<key hidden>)"

    def seal(self, name: str, secret: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _PREFIX + nonce + self._aead.encrypt(nonce, secret, name.encode())

    def open(self, name: str, stored: bytes | str) -> bytes:
        """The secret sealed under ``name``.

        A value not in the sealed format is refused, never read as plain
        text: a secret in clear is either left over from before sealing or
        planted by whoever could write the database, and using it would
        let that writer choose the PIN key or a private key.
        """
        if not self.is_sealed(stored):
            raise SealError(
                f"key store entry {name!r} is not sealed: a secret stored in clear is refused"
            )
        raw = stored.encode() if isinstance(stored, str) else bytes(stored)
        body = raw[len(_PREFIX):]
        try:
            return self._aead.decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], name.encode())
        except InvalidTag:
            raise SealError(
                f"cannot open the sealed {name}: wrong sealing key, or the store was altered"
            ) from None

    @staticmethod
    def is_sealed(stored: bytes | str) -> bool:
        """Whether ``stored`` is in the sealed format (not whether it opens)."""
        if isinstance(stored, str):
            return stored.startswith(_PREFIX.decode("ascii"))
        return bytes(stored).startswith(_PREFIX)
