"""The one set of P-256 key helpers: the 65-byte point and the raw scalar.

Phones, the NFC/BLE protocol, the tokens and the key store all name P-256
keys by their uncompressed SEC1 point (``04 || x || y``); these are the only
functions that encode, decode and check it. Pure (cryptography only), so the
core and the protocol code may use them.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "CURVE",
    "generate_private_key",
    "load_public_key",
    "private_key_from_scalar",
    "private_scalar",
    "public_key_bytes",
    "x_coordinate",
]

CURVE = ec.SECP256R1()


def _check_point(point: bytes) -> None:
    if len(point) != 65 or point[0] != 0x04:
        raise ValueError("expected a 65-byte uncompressed P-256 point")


def public_key_bytes(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """The 65-byte uncompressed point, the only key encoding on the wire."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def x_coordinate(point: bytes) -> bytes:
    """The x coordinate of a 65-byte uncompressed point (the signed strings use it)."""
    _check_point(point)
    return point[1:33]


def load_public_key(point: bytes) -> ec.EllipticCurvePublicKey:
    """Decode and validate a peer's point; ValueError if it is not on P-256."""
    _check_point(point)
    return ec.EllipticCurvePublicKey.from_encoded_point(CURVE, point)


def private_key_from_scalar(scalar: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from its 32-byte big-endian scalar (vectors, key files)."""
    if len(scalar) != 32:
        raise ValueError("a P-256 private scalar is 32 bytes")
    return ec.derive_private_key(int.from_bytes(scalar, "big"), CURVE)


def private_scalar(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_numbers().private_value.to_bytes(32, "big")


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(CURVE)
