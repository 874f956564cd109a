"""Key schedule and primitives of the Aliro-style NFC flow.

Each primitive is a separate function so a benchmark can time it on its own
and so both roles (reader and phone) derive keys from the same code. The byte
layouts follow the public Aliro 1.0 descriptions and were checked against the
NXP vectors in ../shared/vectors/aliro (see protocols/nfc/README.md).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from passbridge.errors import PassbridgeError

# The one set of P-256 helpers (passbridge/p256.py), re-exported: the roles
# and the vector scripts name them from here.
from passbridge.p256 import CURVE as CURVE
from passbridge.p256 import generate_private_key
from passbridge.p256 import load_public_key as load_public_key
from passbridge.p256 import private_key_from_scalar as private_key_from_scalar
from passbridge.p256 import private_scalar as private_scalar
from passbridge.p256 import public_key_bytes as public_key_bytes
from passbridge.p256 import x_coordinate as x_coordinate
from passbridge.protocol import tlv

_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

AID = bytes.fromhex("A000000909ACCE5501")
PROTOCOL_VERSION = bytes.fromhex("0100")

READER_CONTEXT = bytes.fromhex("415D9569")  # appended to the string the reader signs
ENDPOINT_CONTEXT = bytes.fromhex("4E887B4C")  # appended to the string the phone signs

LABEL_VOLATILE = b"Volatile****"
LABEL_PERSISTENT = b"Persistent**"
LABEL_VOLATILE_FAST = b"VolatileFast"

COMMAND_STANDARD = 0x00
COMMAND_FAST = 0x01
POLICY_USER_DEVICE = 0x01

DIRECTION_READER_TO_DEVICE = bytes(8)
DIRECTION_DEVICE_TO_READER = bytes(7) + b"\x01"

_ECDSA = ec.ECDSA(hashes.SHA256())
_ECDSA_DETERMINISTIC = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


class Interface(IntEnum):
    """The interface byte that separates NFC and BLE key schedules."""

    NFC = 0x5E
    BLE = 0xC3


class CryptoFailure(PassbridgeError):
    """A signature, tag or key check failed; the peer is not who it claims."""


# ---------------------------------------------------------------- keys


def generate_ephemeral() -> ec.EllipticCurvePrivateKey:
    return generate_private_key()


def generate_ephemeral_pair() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A fresh ephemeral key with its 65-byte point, the form AUTH0 sends."""
    key = generate_private_key()
    return key, public_key_bytes(key)


class EphemeralKeyPool:
    """Ephemeral key pairs generated ahead of a tap.

    Key generation is the one step of a transaction that does not depend on
    the peer, so doing it between taps takes it off the tap's critical path.
    The pool keeps each key's encoded point too, for the same reason. Each key
    is handed out once. ``refill`` is meant to run when the reader is idle;
    ``take`` falls back to generating on the spot when the pool is empty.
    """

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._keys: deque[tuple[ec.EllipticCurvePrivateKey, bytes]] = deque()
        self.refill()

    def refill(self) -> None:
        while len(self._keys) < self._size:
            self._keys.append(generate_ephemeral_pair())

    def take(self) -> ec.EllipticCurvePrivateKey:
        return self.take_pair()[0]

    def take_pair(self) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        """A key and its encoded point; generated on the spot if the pool is empty."""
        return self._keys.popleft() if self._keys else generate_ephemeral_pair()

    def __len__(self) -> int:
        return len(self._keys)


def key_slot(credential_public_key: bytes) -> bytes:
    """First 8 bytes of SHA-1 over the 65-byte credential key (Aliro key_slot)."""
    return hashlib.sha1(credential_public_key, usedforsecurity=False).digest()[:8]


# ---------------------------------------------------------------- ECDH and KDFs


def ecdh_shared_x(private_key: ec.EllipticCurvePrivateKey,
                  peer: bytes | ec.EllipticCurvePublicKey) -> bytes:
    """Z, the x coordinate of the ECDH shared point (32 bytes).

    ``peer`` may be a key already loaded (and so already checked to be on the
    curve) when the message parser did it, so the point is decoded once a tap.
    """
    key = load_public_key(peer) if isinstance(peer, bytes) else peer
    return private_key.exchange(ec.ECDH(), key)


def x963_kdf(shared_x: bytes, transaction_id: bytes, length: int = 32) -> bytes:
    """ANSI X9.63 KDF with SHA-256 and the transaction id as shared info: Kdh."""
    return X963KDF(algorithm=hashes.SHA256(), length=length,
                   sharedinfo=transaction_id).derive(shared_x)


def hkdf_sha256(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


@dataclass(frozen=True)
class SaltInputs:
    """Everything both sides know after AUTH0 that enters every salt.

    ``command_parameters`` is the byte the reader actually sent in AUTH0,
    so a STANDARD fall-back after a FAST attempt salts with 01.
    """

    reader_public_x: bytes  # reader (group) long-term key, x coordinate
    reader_id: bytes  # group id (16) || sub id (16)
    interface: Interface
    version: bytes  # the selected protocol version, 2 bytes
    reader_ephemeral_x: bytes
    transaction_id: bytes
    command_parameters: int
    authentication_policy: int
    select_a5: bytes  # the whole A5 TLV of the SELECT answer

    def salt(self, label: bytes, credential_public_x: bytes = b"") -> bytes:
        """The salt layout of protocols/nfc/README.md, "Key schedule"."""
        return b"".join((
            self.reader_public_x, label, self.reader_id, bytes((int(self.interface),)),
            tlv.encode(0x5C, self.version), self.reader_ephemeral_x, self.transaction_id,
            bytes((self.command_parameters, self.authentication_policy)), self.select_a5,
            credential_public_x))


@dataclass(frozen=True)
class VolatileKeys:
    """Keys of one STANDARD tap (HKDF output split in five)."""

    exchange_sk_reader: bytes
    exchange_sk_device: bytes
    step_up_sk: bytes
    ble_sk: bytes
    ursk: bytes


@dataclass(frozen=True)
class FastKeys:
    """Keys of one FAST tap, derived from the persistent key."""

    cryptogram_sk: bytes
    exchange_sk_reader: bytes
    exchange_sk_device: bytes
    ble_sk: bytes
    ursk: bytes


def derive_kdh(ephemeral_private: ec.EllipticCurvePrivateKey,
               peer_ephemeral: bytes | ec.EllipticCurvePublicKey,
               transaction_id: bytes) -> bytes:
    return x963_kdf(ecdh_shared_x(ephemeral_private, peer_ephemeral), transaction_id)


def derive_volatile_keys(kdh: bytes, salt_inputs: SaltInputs,
                         endpoint_ephemeral_x: bytes) -> VolatileKeys:
    okm = hkdf_sha256(kdh, salt_inputs.salt(LABEL_VOLATILE), endpoint_ephemeral_x, 160)
    return VolatileKeys(okm[0:32], okm[32:64], okm[64:96], okm[96:128], okm[128:160])


def derive_kpersistent(kdh: bytes, salt_inputs: SaltInputs, endpoint_ephemeral_x: bytes,
                       credential_public_key: bytes) -> bytes:
    salt = salt_inputs.salt(LABEL_PERSISTENT, x_coordinate(credential_public_key))
    return hkdf_sha256(kdh, salt, endpoint_ephemeral_x, 32)


def derive_fast_keys(kpersistent: bytes, salt_inputs: SaltInputs, endpoint_ephemeral_x: bytes,
                     credential_public_key: bytes) -> FastKeys:
    salt = salt_inputs.salt(LABEL_VOLATILE_FAST, x_coordinate(credential_public_key))
    okm = hkdf_sha256(kpersistent, salt, endpoint_ephemeral_x, 160)
    return FastKeys(okm[0:32], okm[32:64], okm[64:96], okm[96:128], okm[128:160])


# ---------------------------------------------------------------- signatures


def authentication_data(reader_id: bytes, endpoint_ephemeral_x: bytes,
                        reader_ephemeral_x: bytes, transaction_id: bytes,
                        context: bytes) -> bytes:
    """The string each side signs; ``context`` tells reader and phone apart."""
    return tlv.encode_all((
        (0x4D, reader_id),
        (0x86, endpoint_ephemeral_x),
        (0x87, reader_ephemeral_x),
        (0x4C, transaction_id),
        (0x93, context),
    ))


def sign_raw(private_key: ec.EllipticCurvePrivateKey, data: bytes, *,
             deterministic: bool = False) -> bytes:
    """ECDSA P-256 SHA-256 as 64 bytes r||s (RFC 6979 nonces if ``deterministic``)."""
    der = private_key.sign(data, _ECDSA_DETERMINISTIC if deterministic else _ECDSA)
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify_raw(public_key: bytes | ec.EllipticCurvePublicKey, signature: bytes,
               data: bytes) -> bool:
    """Check a raw r||s signature; False for any malformed key or signature."""
    if len(signature) != 64:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < _ORDER and 0 < s < _ORDER):
        return False
    try:
        key = load_public_key(public_key) if isinstance(public_key, bytes) else public_key
        key.verify(encode_dss_signature(r, s), data, _ECDSA)
    except (InvalidSignature, ValueError):
        return False
    return True


# ---------------------------------------------------------------- AES-GCM


def gcm_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    return AESGCM(key).encrypt(iv, plaintext, None)


def gcm_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Decrypt and authenticate; raises CryptoFailure on a bad tag or short input."""
    if len(ciphertext) < 16:
        raise CryptoFailure("ciphertext shorter than its tag")
    try:
        return AESGCM(key).decrypt(iv, ciphertext, None)
    except InvalidTag:
        raise CryptoFailure("AES-GCM tag mismatch") from None


CRYPTOGRAM_IV = bytes(12)


def encrypt_cryptogram(cryptogram_sk: bytes, plaintext: bytes) -> bytes:
    return gcm_encrypt(cryptogram_sk, CRYPTOGRAM_IV, plaintext)


def decrypt_cryptogram(cryptogram_sk: bytes, cryptogram: bytes) -> bytes:
    return gcm_decrypt(cryptogram_sk, CRYPTOGRAM_IV, cryptogram)


class SecureChannel:
    """The AES-GCM channel after authentication, one counter per direction.

    IV = 8-byte direction || 4-byte big-endian counter, counters start at 1.
    A message that fails to authenticate does not advance the receive counter
    but the caller is expected to end the transaction anyway.
    """

    def __init__(self, *, send_key: bytes, receive_key: bytes, is_reader: bool) -> None:
        self._send_key = send_key
        self._receive_key = receive_key
        self._send_dir = DIRECTION_READER_TO_DEVICE if is_reader else DIRECTION_DEVICE_TO_READER
        self._recv_dir = DIRECTION_DEVICE_TO_READER if is_reader else DIRECTION_READER_TO_DEVICE
        self.send_counter = 1
        self.receive_counter = 1

    def encrypt(self, plaintext: bytes) -> bytes:
        if self.send_counter > 0xFFFFFFFF:
            raise CryptoFailure("send counter exhausted")
        iv = self._send_dir + self.send_counter.to_bytes(4, "big")
        self.send_counter += 1
        return gcm_encrypt(self._send_key, iv, plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        if self.receive_counter > 0xFFFFFFFF:
            raise CryptoFailure("receive counter exhausted")
        iv = self._recv_dir + self.receive_counter.to_bytes(4, "big")
        plaintext = gcm_decrypt(self._receive_key, iv, ciphertext)
        self.receive_counter += 1
        return plaintext


def same_bytes(a: bytes, b: bytes) -> bool:
    """Constant-time equality for key material and identifiers."""
    return hmac.compare_digest(a, b)
