"""What must persist but never goes in the site file: secrets, keys and phone enrolments.

The site file is meant to be reviewed, versioned and copied; the installation's
PIN key, the bridge and reader private keys, phone public keys bound to users,
and the FAST persistent keys must not travel with it. They live here:
``SqliteKeyStore`` in the service's database file (created 0600, separate
tables from the audit log), ``MemoryKeyStore`` for scenarios and tests that
want fresh keys each run. Both follow one Protocol, ``KeyStore``, and satisfy
the NFC reader's ``CredentialDirectory``.

Secrets are created on first use (get-or-create), never logged, and hidden
from ``repr``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from passbridge.adapters.sealing import Sealer, SealError, load_or_create_sealing_key
from passbridge.adapters.sqlite_file import connect_private
from passbridge.clock import Clock, SystemClock
from passbridge.core.model import Side, TrustedKey
from passbridge.core.tokens import (
    TOKEN_FACTORS,
    PrivateKey,
    generate_private_key,
    load_private_key_pem,
    load_public_key_pem,
    p256_public_key_from_point,
    private_key_to_pem,
    public_key_to_pem,
)
from passbridge.errors import PassbridgeError
from passbridge.ids import check_id
from passbridge.p256 import public_key_bytes
from passbridge.protocol.ble_advert import derive_proximity_key

PIN_KEY_BYTES = 32
TRUST_KINDS = frozenset({"backend", "bridge"})
DEVICE_SECRET_BYTES = 32
ONE_TIME_KEY_BYTES = 32
# How long an expired one-time code's row is kept before the next new code
# prunes it (seconds): only a replay's "used" vs "unknown" answer depends on it.
ONE_TIME_KEPT = 24 * 3600.0


class KeyStoreError(PassbridgeError, RuntimeError):
    """The key store cannot be opened or read; the service cannot start without it."""


@dataclass(frozen=True, slots=True)
class BridgeKey:
    """The in-process bridge's signing key; its id is both ``kid`` and ``iss``."""

    id: str
    alg: str
    private_key: PrivateKey = field(repr=False)

    @property
    def public_key_pem(self) -> str:
        return public_key_to_pem(self.private_key)

    def trusted(self) -> TrustedKey:
        """The entry a core uses to trust this bridge: every door and every
        factor a token carries, since it serves the Remote and Nearby paths too."""
        return TrustedKey(self.id, self.alg, self.public_key_pem, factors=TOKEN_FACTORS)


@dataclass(frozen=True)
class ReaderKey:
    """The site's reader key material, shared by its readers: a P-256 key
    and the 16-byte reader group and sub identifiers.

    Plain key material on purpose: the key store is storage, not protocol.
    The bridge turns it into the Aliro reader's ``ReaderIdentity``
    (``bridge.reader_driver.reader_identity``), so no adapter imports the
    Aliro protocol.
    """

    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    group_id: bytes
    sub_id: bytes

    def __post_init__(self) -> None:
        if len(self.group_id) != 16 or len(self.sub_id) != 16:
            raise ValueError("reader group id and sub id are 16 bytes each")

    @cached_property
    def public_key(self) -> bytes:
        """The 65-byte point phones trust (an OpenSSL call, so once per key)."""
        return public_key_bytes(self.private_key)


@dataclass(frozen=True, slots=True)
class PhoneEnrolment:
    credential_id: str
    user_id: str
    public_key: bytes  # 65-byte uncompressed P-256 point
    enrolled_at: datetime
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class OneTimeCode:
    """A sign-in link's token or a phone enrolment code, as stored: only its
    keyed hash (``digest``), never the code itself, so a copy of the database
    cannot be used to sign in or enrol (service/one_time.py makes and checks them)."""

    digest: bytes
    kind: str
    user_id: str
    issued_by: str
    expires_at: float  # seconds since the epoch (UTC)
    used: bool = False


class DeviceKind(StrEnum):
    """What a wired device at a door side is: a badge reader or a keypad."""

    READER = "reader"
    KEYPAD = "keypad"


DeviceSlot = tuple[str, Side, DeviceKind]


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """One wired device's key: the door, side and kind it speaks for.

    The device presents ``token`` (``<id>.<secret>``): the id is public (it
    names the key in lists and logs), the secret is not and is kept sealed.
    """

    id: str
    door: str
    side: Side
    kind: DeviceKind
    created_at: datetime
    secret: str = field(repr=False)

    @property
    def slot(self) -> DeviceSlot:
        return (self.door, self.side, self.kind)

    @property
    def token(self) -> str:
        return f"{self.id}.{self.secret}"


OSDP_KEY_BYTES = 16


class OsdpKeyExists(KeyStoreError):
    """The door side already has an OSDP reader key: install mode gives a
    reader its key once (``passbridge osdp install --again`` replaces it)."""


@dataclass(frozen=True, slots=True)
class OsdpKey:
    """The secure channel base key (SCBK) of the OSDP reader at a door side,
    set once by install mode. Kept sealed at rest; never printed."""

    door: str
    side: Side
    installed_at: datetime
    scbk: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.scbk) != OSDP_KEY_BYTES:
            raise ValueError(f"an OSDP SCBK is {OSDP_KEY_BYTES} bytes")


def new_osdp_key() -> bytes:
    """A fresh SCBK from the OS's secure random source (libosdp's
    ``KeyStore.gen_key`` uses ``random``, which is not)."""
    return secrets.token_bytes(OSDP_KEY_BYTES)


def _new_device_key(slot: DeviceSlot, at: datetime) -> DeviceKey:
    """A fresh key for a slot: a random public id (no dot) and a random secret."""
    door, side, kind = slot
    return DeviceKey(f"dk-{secrets.token_hex(8)}", door, Side(side), DeviceKind(kind), at,
                     secrets.token_urlsafe(DEVICE_SECRET_BYTES))


def _osdp_key_exists(old: OsdpKey) -> OsdpKeyExists:
    return OsdpKeyExists(
        f"door {old.door!r} side {old.side.value} already has an OSDP reader key "
        f"(installed {old.installed_at.isoformat(timespec='seconds')}); a reader takes the "
        f"install key once: pass --again to install a new or factory-reset reader there")


class KeyStore(Protocol):
    def pin_key(self) -> bytes: ...
    def bridge_key(self) -> BridgeKey: ...
    def reader_key(self) -> ReaderKey: ...
    def enroll_phone(self, credential_id: str, user_id: str, public_key: bytes) -> PhoneEnrolment:
        ...
    def revoke_phone(self, credential_id: str) -> bool: ...
    def phone(self, credential_id: str) -> PhoneEnrolment | None: ...
    def phones(self) -> list[PhoneEnrolment]: ...
    def phone_public_key(self, credential_id: str) -> bytes | None: ...
    def credential_for_public_key(self, public_key: bytes) -> str | None: ...
    def persistent_keys(self) -> Iterable[tuple[str, bytes, bytes]]: ...
    def persistent_key(self, credential_id: str) -> tuple[bytes, bytes] | None: ...
    def remember_persistent_key(self, credential_id: str, public_key: bytes,
                                kpersistent: bytes) -> None: ...
    def add_trusted_key(self, kind: str, key: TrustedKey) -> None: ...
    def trusted_keys(self, kind: str) -> list[TrustedKey]: ...
    def proximity_keys(self) -> list[tuple[str, bytes]]: ...
    def proximity_version(self) -> tuple[int, ...]: ...
    def ensure_device_keys(self, slots: Iterable[DeviceSlot]) -> list[DeviceKey]: ...
    def rotate_device_key(self, slot: DeviceSlot) -> DeviceKey | None: ...
    def device_key(self, key_id: str) -> DeviceKey | None: ...
    def device_keys(self) -> list[DeviceKey]: ...
    def osdp_key(self, door: str, side: Side) -> OsdpKey | None: ...
    def osdp_keys(self) -> list[OsdpKey]: ...
    def set_osdp_key(self, door: str, side: Side, scbk: bytes, *, replace: bool = False
                     ) -> OsdpKey: ...
    def one_time_key(self) -> bytes: ...
    def add_one_time_code(self, code: OneTimeCode, *, now: float) -> None: ...
    def one_time_code(self, kind: str, digest: bytes) -> OneTimeCode | None: ...
    def use_one_time_code(self, kind: str, digest: bytes, *, now: float) -> bool: ...
    def close(self) -> None: ...


def _bridge_id(private_key: PrivateKey) -> str:
    """A stable, public name for a bridge key: a short thumbprint of its public key."""
    digest = hashlib.sha256(public_key_to_pem(private_key).encode("ascii")).hexdigest()
    return f"bridge-{digest[:16]}"


def _check_point(public_key: bytes) -> bytes:
    p256_public_key_from_point(bytes(public_key))  # raises BadKey (a ValueError) if not P-256
    return bytes(public_key)


def _check_ids(credential_id: str, user_id: str) -> None:
    """Both follow the id rule (passbridge.ids): they reach URLs, file names and logs."""
    check_id(credential_id, "credential id")
    check_id(user_id, "user id")


def _check_trust(kind: str, key: TrustedKey) -> None:
    if kind not in TRUST_KINDS:
        raise ValueError(f"trust kind must be one of {sorted(TRUST_KINDS)}")
    load_public_key_pem(key.public_key_pem, key.alg)  # type and alg checked


def _new_reader_key() -> ReaderKey:
    key = generate_private_key("ES256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return ReaderKey(key, secrets.token_bytes(16), secrets.token_bytes(16))


# ---------------------------------------------------------------------------


class MemoryKeyStore:
    """Fresh keys each run; nothing outlives the process."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        bridge_alg: str = "ES256",
        pin_key: bytes | None = None,
    ) -> None:
        """``pin_key`` lets a caller that already hashed PINs with a key (the
        scenario runner loads every file before it runs any) keep using it."""
        if pin_key is not None and len(pin_key) < PIN_KEY_BYTES:
            raise ValueError(f"a PIN key has at least {PIN_KEY_BYTES} bytes")
        self._clock: Clock = clock or SystemClock()
        self._bridge_alg = bridge_alg
        self._lock = threading.RLock()
        self._pin_key: bytes | None = pin_key
        self._bridge: BridgeKey | None = None
        self._reader: ReaderKey | None = None
        self._phones: dict[str, PhoneEnrolment] = {}
        self._by_key: dict[bytes, str] = {}
        self._persistent: dict[str, tuple[bytes, bytes]] = {}
        self._trust: dict[str, dict[str, TrustedKey]] = {k: {} for k in TRUST_KINDS}
        # credential id -> proximity key (resolvable BLE ids), and a change counter.
        self._proximity: dict[str, bytes] = {}
        self._proximity_changes = 0
        self._devices: dict[DeviceSlot, DeviceKey] = {}
        self._osdp: dict[tuple[str, Side], OsdpKey] = {}
        self._one_time_key: bytes | None = None
        self._codes: dict[tuple[str, bytes], OneTimeCode] = {}

    def __repr__(self) -> str:
        return f"MemoryKeyStore(phones={len(self._phones)})"

    def pin_key(self) -> bytes:
        with self._lock:
            if self._pin_key is None:
                self._pin_key = secrets.token_bytes(PIN_KEY_BYTES)
            return self._pin_key

    def bridge_key(self) -> BridgeKey:
        with self._lock:
            if self._bridge is None:
                key = generate_private_key(self._bridge_alg)
                self._bridge = BridgeKey(_bridge_id(key), self._bridge_alg, key)
            return self._bridge

    def reader_key(self) -> ReaderKey:
        with self._lock:
            if self._reader is None:
                self._reader = _new_reader_key()
            return self._reader

    def enroll_phone(self, credential_id: str, user_id: str, public_key: bytes) -> PhoneEnrolment:
        _check_ids(credential_id, user_id)
        point = _check_point(public_key)
        with self._lock:
            owner = self._by_key.get(point)
            if owner is not None and owner != credential_id:
                raise ValueError("this public key is already enrolled for another credential")
            old = self._phones.get(credential_id)
            if old is not None:
                self._by_key.pop(old.public_key, None)
            self._persistent.pop(credential_id, None)
            enrolment = PhoneEnrolment(credential_id, user_id, point,
                                       self._clock.now().astimezone(UTC))
            self._phones[credential_id] = enrolment
            self._by_key[point] = credential_id
            self._proximity[credential_id] = derive_proximity_key(
                self.reader_key().private_key, point)
            self._proximity_changes += 1
            return enrolment

    def revoke_phone(self, credential_id: str) -> bool:
        with self._lock:
            old = self._phones.get(credential_id)
            self._persistent.pop(credential_id, None)
            if self._proximity.pop(credential_id, None) is not None:
                self._proximity_changes += 1
            if old is None or old.revoked:
                return False
            self._phones[credential_id] = PhoneEnrolment(
                old.credential_id, old.user_id, old.public_key, old.enrolled_at, revoked=True)
            return True

    def phone(self, credential_id: str) -> PhoneEnrolment | None:
        with self._lock:
            return self._phones.get(credential_id)

    def phones(self) -> list[PhoneEnrolment]:
        with self._lock:
            return sorted(self._phones.values(), key=lambda p: p.credential_id)

    def phone_public_key(self, credential_id: str) -> bytes | None:
        enrolment = self.phone(credential_id)
        return None if enrolment is None or enrolment.revoked else enrolment.public_key

    def credential_for_public_key(self, public_key: bytes) -> str | None:
        with self._lock:
            cred = self._by_key.get(bytes(public_key))
            if cred is None or self._phones[cred].revoked:
                return None
            return cred

    def persistent_key(self, credential_id: str) -> tuple[bytes, bytes] | None:
        """(public key, Kpersistent) of one active phone, if it holds a key."""
        with self._lock:
            return self._persistent.get(credential_id)  # enrol and revoke drop it

    def persistent_keys(self) -> list[tuple[str, bytes, bytes]]:
        with self._lock:
            return [(cred, pk, kp) for cred, (pk, kp) in self._persistent.items()
                    if not self._phones[cred].revoked]

    def remember_persistent_key(self, credential_id: str, public_key: bytes,
                                kpersistent: bytes) -> None:
        with self._lock:
            if self.credential_for_public_key(public_key) != credential_id:
                return  # unknown, revoked, or not this credential's key: nothing to remember
            self._persistent[credential_id] = (bytes(public_key), bytes(kpersistent))

    def add_trusted_key(self, kind: str, key: TrustedKey) -> None:
        _check_trust(kind, key)
        with self._lock:
            self._trust[kind][key.id] = key

    def trusted_keys(self, kind: str) -> list[TrustedKey]:
        with self._lock:
            return sorted(self._trust.get(kind, {}).values(), key=lambda k: k.id)

    def proximity_keys(self) -> list[tuple[str, bytes]]:
        """(credential id, proximity key) of every active phone."""
        with self._lock:
            return sorted(self._proximity.items())

    def proximity_version(self) -> tuple[int, ...]:
        """Changes whenever ``proximity_keys`` would answer differently."""
        with self._lock:
            return (self._proximity_changes,)

    def ensure_device_keys(self, slots: Iterable[DeviceSlot]) -> list[DeviceKey]:
        made = []
        with self._lock:
            for slot in slots:
                if slot not in self._devices:
                    self._devices[slot] = _new_device_key(slot, self._clock.now().astimezone(UTC))
                    made.append(self._devices[slot])
        return made

    def rotate_device_key(self, slot: DeviceSlot) -> DeviceKey | None:
        with self._lock:
            if slot not in self._devices:
                return None
            self._devices[slot] = _new_device_key(slot, self._clock.now().astimezone(UTC))
            return self._devices[slot]

    def device_key(self, key_id: str) -> DeviceKey | None:
        with self._lock:
            return next((k for k in self._devices.values() if k.id == key_id), None)

    def device_keys(self) -> list[DeviceKey]:
        with self._lock:
            return sorted(self._devices.values(), key=lambda k: k.slot)

    def osdp_key(self, door: str, side: Side) -> OsdpKey | None:
        with self._lock:
            return self._osdp.get((door, Side(side)))

    def osdp_keys(self) -> list[OsdpKey]:
        with self._lock:
            return sorted(self._osdp.values(), key=lambda k: (k.door, k.side))

    def set_osdp_key(self, door: str, side: Side, scbk: bytes, *, replace: bool = False
                     ) -> OsdpKey:
        key = OsdpKey(door, Side(side), self._clock.now().astimezone(UTC), scbk)
        with self._lock:
            old = self._osdp.get((door, key.side))
            if old is not None and not replace:
                raise _osdp_key_exists(old)
            self._osdp[(door, key.side)] = key
        return key
    def one_time_key(self) -> bytes:
        with self._lock:
            if self._one_time_key is None:
                self._one_time_key = secrets.token_bytes(ONE_TIME_KEY_BYTES)
            return self._one_time_key

    def add_one_time_code(self, code: OneTimeCode, *, now: float) -> None:
        with self._lock:
            for key in [k for k, c in self._codes.items() if c.expires_at < now - ONE_TIME_KEPT]:
                del self._codes[key]
            self._codes[(code.kind, code.digest)] = code

    def one_time_code(self, kind: str, digest: bytes) -> OneTimeCode | None:
        with self._lock:
            return self._codes.get((kind, digest))

    def use_one_time_code(self, kind: str, digest: bytes, *, now: float) -> bool:
        with self._lock:
            code = self._codes.get((kind, digest))
            if code is None or code.used or code.expires_at <= now:
                return False
            self._codes[(kind, digest)] = replace(code, used=True)
            return True

    def close(self) -> None:
        return None


# ---------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ks_secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS ks_private_keys (
    role        TEXT PRIMARY KEY,      -- 'bridge' | 'reader'
    id          TEXT NOT NULL,
    alg         TEXT NOT NULL,
    private_pem TEXT NOT NULL,
    group_id    BLOB,
    sub_id      BLOB
);
CREATE TABLE IF NOT EXISTS ks_phones (
    credential_id TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    public_key    BLOB NOT NULL UNIQUE,
    enrolled_at   TEXT NOT NULL,
    revoked       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ks_persistent_keys (
    credential_id TEXT PRIMARY KEY REFERENCES ks_phones (credential_id),
    public_key    BLOB NOT NULL,
    kpersistent   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS ks_trusted_keys (
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    alg        TEXT NOT NULL,
    public_pem TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
-- Proximity keys of resolvable BLE ids (protocols/ble), sealed. ``seq`` is
-- never reused (AUTOINCREMENT), so (count, max, sum) of it changes with every
-- write: that is how a service notices a phone enrolled by the CLI.
CREATE TABLE IF NOT EXISTS ks_proximity_keys (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    credential_id TEXT NOT NULL UNIQUE,
    public_key    BLOB NOT NULL,
    proximity_key BLOB NOT NULL
);
-- Sign-in link tokens and phone enrolment codes: only their keyed hash
-- (HMAC-SHA256 under the sealed 'one_time_key'), single use, short lived.
CREATE TABLE IF NOT EXISTS ks_one_time_codes (
    digest     BLOB NOT NULL,
    kind       TEXT NOT NULL,       -- 'sign_in' | 'enrol'
    user_id    TEXT NOT NULL,
    issued_by  TEXT NOT NULL,
    expires_at REAL NOT NULL,       -- seconds since the epoch
    used       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, digest)
);
CREATE TABLE IF NOT EXISTS ks_device_keys (
    id         TEXT PRIMARY KEY,
    door       TEXT NOT NULL,
    side       TEXT NOT NULL,       -- 'in' | 'out'
    kind       TEXT NOT NULL,       -- 'reader' | 'keypad'
    secret     BLOB NOT NULL,       -- sealed, bound to 'device:<id>'
    created_at TEXT NOT NULL,
    UNIQUE (door, side, kind)
);
-- The SCBK of each door side's OSDP reader (passbridge osdp install), sealed.
CREATE TABLE IF NOT EXISTS ks_osdp_keys (
    door         TEXT NOT NULL,
    side         TEXT NOT NULL,     -- 'in' | 'out'
    scbk         BLOB NOT NULL,     -- sealed, bound to 'osdp:<door>:<side>'
    installed_at TEXT NOT NULL,
    PRIMARY KEY (door, side)
);
"""


class SqliteKeyStore:
    """The key store of a running installation, in a SQLite file readable by its owner only."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None,
                 bridge_alg: str = "ES256", sealing_key: bytes | None = None) -> None:
        """``sealing_key``: what seals the secrets at rest (adapters.sealing);
        by default the environment's or the key file beside the database."""
        self.path = Path(path)
        self._clock: Clock = clock or SystemClock()
        self._bridge_alg = bridge_alg
        self._lock = threading.RLock()
        self._pin_key: bytes | None = None
        self._bridge: BridgeKey | None = None
        self._reader: ReaderKey | None = None
        # credential id -> (public key, Kpersistent), unsealed once and kept for
        # FAST matching; None until first use. See persistent_keys().
        self._fast_keys: dict[str, tuple[bytes, bytes]] | None = None
        self._one_time_key: bytes | None = None
        try:
            # Only SQLite opens the file: a descriptor of our own, once
            # closed, would drop the audit log's locks (adapters.sqlite_file).
            self._db = connect_private(self.path)
            self._db.execute("PRAGMA busy_timeout = 10000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.executescript(_SCHEMA)
            self._sealer = Sealer(
                sealing_key if sealing_key is not None
                else load_or_create_sealing_key(self.path)
            )
        except (OSError, sqlite3.Error, SealError) as exc:
            raise KeyStoreError(f"cannot open key store {self.path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"SqliteKeyStore({str(self.path)!r})"

    # Each write is one transaction; BEGIN IMMEDIATE so get-or-create is
    # race-free even against another process on the same file.
    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise KeyStoreError(f"key store unavailable: {exc}") from exc
            try:
                yield self._db
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise KeyStoreError(f"key store write failed: {exc}") from exc
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise KeyStoreError(f"key store commit failed: {exc}") from exc

    def _seal_pem(self, name: str, key: PrivateKey) -> bytes:
        return self._sealer.seal(name, private_key_to_pem(key).encode("ascii"))

    def _open(self, name: str, stored: object) -> bytes:
        if not isinstance(stored, (bytes, str)):
            raise KeyStoreError(f"stored {name} has the wrong type")
        try:
            return self._sealer.open(name, stored)
        except SealError as exc:
            raise KeyStoreError(str(exc)) from None

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return list(self._db.execute(sql, args).fetchall())
        except sqlite3.Error as exc:
            raise KeyStoreError(f"key store read failed: {exc}") from exc

    # -- secrets and own keys ------------------------------------------------------

    def pin_key(self) -> bytes:
        with self._lock:
            if self._pin_key is None:
                self._pin_key = self._secret("pin_key", PIN_KEY_BYTES)
            return self._pin_key

    def _secret(self, name: str, size: int) -> bytes:
        """A sealed random secret of ``ks_secrets``, made on first use."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM ks_secrets WHERE name = ?", (name,)).fetchone()
            if row is None:
                value = secrets.token_bytes(size)
                db.execute("INSERT INTO ks_secrets (name, value) VALUES (?, ?)",
                           (name, self._sealer.seal(name, value)))
            else:
                value = self._open(name, row[0])
        if len(value) != size:
            raise KeyStoreError(f"stored {name.replace('_', ' ')} has the wrong length")
        return value

    def one_time_key(self) -> bytes:
        with self._lock:
            if self._one_time_key is None:
                self._one_time_key = self._secret("one_time_key", ONE_TIME_KEY_BYTES)
            return self._one_time_key

    def bridge_key(self) -> BridgeKey:
        with self._lock:
            if self._bridge is None:
                with self._tx() as db:
                    row = db.execute("SELECT id, alg, private_pem FROM ks_private_keys "
                                     "WHERE role = 'bridge'").fetchone()
                    if row is None:
                        key = generate_private_key(self._bridge_alg)
                        bridge = BridgeKey(_bridge_id(key), self._bridge_alg, key)
                        db.execute(
                            "INSERT INTO ks_private_keys (role, id, alg, private_pem) "
                            "VALUES ('bridge', ?, ?, ?)",
                            (bridge.id, bridge.alg, self._seal_pem("bridge", key)))
                    else:
                        kid, alg = str(row[0]), str(row[1])
                        pem = self._open("bridge", row[2])
                        bridge = BridgeKey(kid, alg, load_private_key_pem(pem, alg))
                self._bridge = bridge
            return self._bridge

    def reader_key(self) -> ReaderKey:
        with self._lock:
            if self._reader is None:
                with self._tx() as db:
                    row = db.execute("SELECT private_pem, group_id, sub_id FROM ks_private_keys "
                                     "WHERE role = 'reader'").fetchone()
                    if row is None:
                        reader = _new_reader_key()
                        db.execute(
                            "INSERT INTO ks_private_keys "
                            "(role, id, alg, private_pem, group_id, sub_id) "
                            "VALUES ('reader', ?, 'ES256', ?, ?, ?)",
                            (reader.group_id.hex(), self._seal_pem("reader", reader.private_key),
                             reader.group_id, reader.sub_id))
                    else:
                        key = load_private_key_pem(self._open("reader", row[0]), "ES256")
                        assert isinstance(key, ec.EllipticCurvePrivateKey)
                        reader = ReaderKey(key, bytes(row[1]), bytes(row[2]))
                self._reader = reader
            return self._reader

    # -- phones ----------------------------------------------------------------------

    def enroll_phone(self, credential_id: str, user_id: str, public_key: bytes) -> PhoneEnrolment:
        _check_ids(credential_id, user_id)
        point = _check_point(public_key)
        at = self._clock.now().astimezone(UTC)
        # Before the transaction: it may have to make the reader key first.
        proximity = self._derive_proximity_key(point)
        with self._tx() as db:
            row = db.execute("SELECT credential_id FROM ks_phones WHERE public_key = ?",
                             (point,)).fetchone()
            if row is not None and row[0] != credential_id:
                raise ValueError("this public key is already enrolled for another credential")
            db.execute("DELETE FROM ks_persistent_keys WHERE credential_id = ?", (credential_id,))
            self._forget_fast_key(credential_id)
            db.execute(
                "INSERT INTO ks_phones (credential_id, user_id, public_key, enrolled_at, revoked) "
                "VALUES (?, ?, ?, ?, 0) ON CONFLICT (credential_id) DO UPDATE SET "
                "user_id = excluded.user_id, public_key = excluded.public_key, "
                "enrolled_at = excluded.enrolled_at, revoked = 0",
                (credential_id, user_id, point, at.isoformat()))
            self._store_proximity_key(db, credential_id, point, proximity)
        return PhoneEnrolment(credential_id, user_id, point, at)

    def revoke_phone(self, credential_id: str) -> bool:
        with self._tx() as db:
            db.execute("DELETE FROM ks_persistent_keys WHERE credential_id = ?", (credential_id,))
            self._forget_fast_key(credential_id)
            db.execute("DELETE FROM ks_proximity_keys WHERE credential_id = ?", (credential_id,))
            cursor = db.execute("UPDATE ks_phones SET revoked = 1 "
                                "WHERE credential_id = ? AND revoked = 0", (credential_id,))
            return cursor.rowcount > 0

    _PHONE_COLUMNS = "credential_id, user_id, public_key, enrolled_at, revoked"

    @staticmethod
    def _enrolment(row: tuple[object, ...]) -> PhoneEnrolment:
        cred, user, key, at, revoked = row
        assert isinstance(key, bytes)
        return PhoneEnrolment(str(cred), str(user), bytes(key),
                              datetime.fromisoformat(str(at)), bool(revoked))

    def phone(self, credential_id: str) -> PhoneEnrolment | None:
        rows = self._query(f"SELECT {self._PHONE_COLUMNS} FROM ks_phones "  # noqa: S608
                           "WHERE credential_id = ?", (credential_id,))
        return self._enrolment(rows[0]) if rows else None

    def phones(self) -> list[PhoneEnrolment]:
        rows = self._query(f"SELECT {self._PHONE_COLUMNS} FROM ks_phones "  # noqa: S608
                           "ORDER BY credential_id")
        return [self._enrolment(r) for r in rows]

    def phone_public_key(self, credential_id: str) -> bytes | None:
        rows = self._query("SELECT public_key FROM ks_phones "
                           "WHERE credential_id = ? AND revoked = 0", (credential_id,))
        return bytes(rows[0][0]) if rows else None

    def credential_for_public_key(self, public_key: bytes) -> str | None:
        rows = self._query("SELECT credential_id FROM ks_phones "
                           "WHERE public_key = ? AND revoked = 0", (bytes(public_key),))
        return str(rows[0][0]) if rows else None

    def _loaded_fast_keys(self) -> dict[str, tuple[bytes, bytes]]:
        """The persistent keys, unsealed once per process (not once per tap per key).

        This process's enrol, revoke and remember keep the copy current; a
        phone revoked by another process (the CLI) may keep its entry here,
        which can never authenticate it: the reader checks the enrolment in
        the database after every match (``credential_for_public_key``).
        """
        with self._lock:
            if self._fast_keys is None:
                rows = self._query(
                    "SELECT k.credential_id, k.public_key, k.kpersistent "
                    "FROM ks_persistent_keys k JOIN ks_phones p ON "
                    "p.credential_id = k.credential_id AND p.revoked = 0 "
                    "AND p.public_key = k.public_key ORDER BY k.credential_id")
                self._fast_keys = {
                    str(c): (bytes(pk), self._open(f"kpersistent:{c}", kp)) for c, pk, kp in rows}
            return self._fast_keys

    def _forget_fast_key(self, credential_id: str) -> None:
        with self._lock:
            if self._fast_keys is not None:
                self._fast_keys.pop(credential_id, None)

    def persistent_keys(self) -> list[tuple[str, bytes, bytes]]:
        keys = self._loaded_fast_keys()
        with self._lock:
            return [(cred, pk, kp) for cred, (pk, kp) in keys.items()]

    def persistent_key(self, credential_id: str) -> tuple[bytes, bytes] | None:
        """(public key, Kpersistent) of one phone holding a key, from memory."""
        keys = self._loaded_fast_keys()
        with self._lock:
            return keys.get(credential_id)

    def remember_persistent_key(self, credential_id: str, public_key: bytes,
                                kpersistent: bytes) -> None:
        with self._tx() as db:
            row = db.execute("SELECT 1 FROM ks_phones WHERE credential_id = ? AND "
                             "public_key = ? AND revoked = 0",
                             (credential_id, bytes(public_key))).fetchone()
            if row is None:
                return  # unknown, revoked, or not this credential's key
            db.execute(
                "INSERT INTO ks_persistent_keys (credential_id, public_key, kpersistent) "
                "VALUES (?, ?, ?) ON CONFLICT (credential_id) DO UPDATE SET "
                "public_key = excluded.public_key, kpersistent = excluded.kpersistent",
                (credential_id, bytes(public_key),
                 self._sealer.seal(f"kpersistent:{credential_id}", bytes(kpersistent))))
        with self._lock:  # committed: the in-memory copy follows
            if self._fast_keys is not None:
                self._fast_keys[credential_id] = (bytes(public_key), bytes(kpersistent))

    # -- trust --------------------------------------------------------------------------

    def add_trusted_key(self, kind: str, key: TrustedKey) -> None:
        _check_trust(kind, key)
        with self._tx() as db:
            db.execute(
                "INSERT INTO ks_trusted_keys (kind, id, alg, public_pem) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, id) DO UPDATE SET alg = excluded.alg, "
                "public_pem = excluded.public_pem",
                (kind, key.id, key.alg, key.public_key_pem))

    def trusted_keys(self, kind: str) -> list[TrustedKey]:
        rows = self._query("SELECT id, alg, public_pem FROM ks_trusted_keys WHERE kind = ? "
                           "ORDER BY id", (kind,))
        return [TrustedKey(str(i), str(a), str(p)) for i, a, p in rows]

    # -- proximity keys (resolvable BLE ids, protocols/ble) -----------------------------

    def _derive_proximity_key(self, point: bytes) -> bytes:
        """What the phone derives too: ECDH(reader key, phone key) through HKDF."""
        return derive_proximity_key(self.reader_key().private_key, point)

    def _store_proximity_key(self, db: sqlite3.Connection, credential_id: str, point: bytes,
                             key: bytes) -> None:
        db.execute(
            "INSERT OR REPLACE INTO ks_proximity_keys (credential_id, public_key, proximity_key) "
            "VALUES (?, ?, ?)",
            (credential_id, point, self._sealer.seal(f"proximity:{credential_id}", key)))

    def proximity_keys(self) -> list[tuple[str, bytes]]:
        """(credential id, proximity key) of every active phone.

        A phone enrolled before proximity keys existed gets its key now, from
        the same derivation its app runs (the reader key has not changed).
        """
        missing = self._query(
            "SELECT p.credential_id, p.public_key FROM ks_phones p LEFT JOIN ks_proximity_keys k "
            "ON k.credential_id = p.credential_id AND k.public_key = p.public_key "
            "WHERE p.revoked = 0 AND k.seq IS NULL")
        if missing:
            derived = [(str(c), bytes(pk), self._derive_proximity_key(bytes(pk)))
                       for c, pk in missing]
            with self._tx() as db:
                for cred, point, key in derived:
                    still = db.execute("SELECT 1 FROM ks_phones WHERE credential_id = ? AND "
                                       "public_key = ? AND revoked = 0", (cred, point)).fetchone()
                    if still is not None:
                        self._store_proximity_key(db, cred, point, key)
        rows = self._query(
            "SELECT k.credential_id, k.proximity_key FROM ks_proximity_keys k "
            "JOIN ks_phones p ON p.credential_id = k.credential_id AND p.revoked = 0 "
            "AND p.public_key = k.public_key ORDER BY k.credential_id")
        return [(str(c), self._open(f"proximity:{c}", key)) for c, key in rows]

    def proximity_version(self) -> tuple[int, ...]:
        """Changes with every write of a proximity key, by this process or another."""
        rows = self._query("SELECT count(*), coalesce(max(seq), 0), coalesce(sum(seq), 0) "
                           "FROM ks_proximity_keys")
        return tuple(int(v) for v in rows[0])

    # -- wired devices -------------------------------------------------------------------

    def _insert_device_key(self, db: sqlite3.Connection, key: DeviceKey) -> None:
        db.execute(
            "INSERT INTO ks_device_keys (id, door, side, kind, secret, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key.id, key.door, key.side.value, key.kind.value,
             self._sealer.seal(f"device:{key.id}", key.secret.encode("ascii")),
             key.created_at.isoformat()))

    def ensure_device_keys(self, slots: Iterable[DeviceSlot]) -> list[DeviceKey]:
        made = []
        at = self._clock.now().astimezone(UTC)
        with self._tx() as db:
            for slot in slots:
                door, side, kind = slot
                row = db.execute("SELECT 1 FROM ks_device_keys WHERE door = ? AND side = ? "
                                 "AND kind = ?", (door, side.value, kind.value)).fetchone()
                if row is None:
                    key = _new_device_key(slot, at)
                    self._insert_device_key(db, key)
                    made.append(key)
        return made

    def rotate_device_key(self, slot: DeviceSlot) -> DeviceKey | None:
        door, side, kind = slot
        with self._tx() as db:
            cursor = db.execute("DELETE FROM ks_device_keys WHERE door = ? AND side = ? "
                                "AND kind = ?", (door, side.value, kind.value))
            if cursor.rowcount == 0:
                return None
            key = _new_device_key(slot, self._clock.now().astimezone(UTC))
            self._insert_device_key(db, key)
        return key

    _DEVICE_COLUMNS = "id, door, side, kind, secret, created_at"

    def _device(self, row: tuple[Any, ...]) -> DeviceKey:
        key_id, door, side, kind, sealed, at = row
        try:
            secret = self._open(f"device:{key_id}", sealed).decode("ascii")
            return DeviceKey(str(key_id), str(door), Side(side), DeviceKind(kind),
                             datetime.fromisoformat(str(at)), secret)
        except (UnicodeDecodeError, ValueError) as exc:
            raise KeyStoreError(f"stored device key {key_id} is damaged") from exc

    def device_key(self, key_id: str) -> DeviceKey | None:
        rows = self._query(f"SELECT {self._DEVICE_COLUMNS} FROM ks_device_keys "  # noqa: S608
                           "WHERE id = ?", (key_id,))
        return self._device(rows[0]) if rows else None

    def device_keys(self) -> list[DeviceKey]:
        rows = self._query(f"SELECT {self._DEVICE_COLUMNS} FROM ks_device_keys "  # noqa: S608
                           "ORDER BY door, side, kind")
        return [self._device(r) for r in rows]

    # -- OSDP readers ---------------------------------------------------------------------

    def _osdp(self, row: tuple[Any, ...]) -> OsdpKey:
        door, side, sealed, at = row
        try:
            scbk = self._open(f"osdp:{door}:{side}", sealed)
            return OsdpKey(str(door), Side(side), datetime.fromisoformat(str(at)), scbk)
        except ValueError as exc:
            raise KeyStoreError(f"stored OSDP key of {door}/{side} is damaged") from exc

    def osdp_key(self, door: str, side: Side) -> OsdpKey | None:
        rows = self._query("SELECT door, side, scbk, installed_at FROM ks_osdp_keys "
                           "WHERE door = ? AND side = ?", (door, Side(side).value))
        return self._osdp(rows[0]) if rows else None

    def osdp_keys(self) -> list[OsdpKey]:
        rows = self._query("SELECT door, side, scbk, installed_at FROM ks_osdp_keys "
                           "ORDER BY door, side")
        return [self._osdp(r) for r in rows]

    def set_osdp_key(self, door: str, side: Side, scbk: bytes, *, replace: bool = False
                     ) -> OsdpKey:
        key = OsdpKey(door, Side(side), self._clock.now().astimezone(UTC), scbk)
        with self._tx() as db:
            row = db.execute("SELECT door, side, scbk, installed_at FROM ks_osdp_keys "
                             "WHERE door = ? AND side = ?", (door, key.side.value)).fetchone()
            if row is not None and not replace:
                raise _osdp_key_exists(self._osdp(row))
            db.execute("INSERT OR REPLACE INTO ks_osdp_keys (door, side, scbk, installed_at) "
                       "VALUES (?, ?, ?, ?)",
                       (door, key.side.value,
                        self._sealer.seal(f"osdp:{door}:{key.side.value}", scbk),
                        key.installed_at.isoformat()))
        return key
    # -- one-time codes (sign-in links, enrolment codes) ----------------------------

    def add_one_time_code(self, code: OneTimeCode, *, now: float) -> None:
        """Store a new code, and drop those expired for a day (used or not)."""
        with self._tx() as db:
            db.execute("DELETE FROM ks_one_time_codes WHERE expires_at < ?",
                       (now - ONE_TIME_KEPT,))
            db.execute(
                "INSERT INTO ks_one_time_codes (digest, kind, user_id, issued_by, expires_at, "
                "used) VALUES (?, ?, ?, ?, ?, 0)",
                (code.digest, code.kind, code.user_id, code.issued_by, code.expires_at))

    def one_time_code(self, kind: str, digest: bytes) -> OneTimeCode | None:
        """A read, never a write: a wrong code costs no durable write."""
        rows = self._query("SELECT user_id, issued_by, expires_at, used FROM ks_one_time_codes "
                           "WHERE kind = ? AND digest = ?", (kind, digest))
        if not rows:
            return None
        user, issued_by, expires_at, used = rows[0]
        return OneTimeCode(digest, kind, str(user), str(issued_by), float(expires_at),
                           bool(used))

    def use_one_time_code(self, kind: str, digest: bytes, *, now: float) -> bool:
        """Mark the code used if it is unused and unexpired, in one statement:
        of two redemptions racing, from this process or another, one wins."""
        with self._tx() as db:
            cursor = db.execute("UPDATE ks_one_time_codes SET used = 1 WHERE kind = ? AND "
                                "digest = ? AND used = 0 AND expires_at > ?",
                                (kind, digest, now))
            return cursor.rowcount == 1

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()

    def __enter__(self) -> SqliteKeyStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
