"""Key material: generating, loading and writing keys, and P-256 points.

Every key is pinned to one algorithm. Loading checks the key's type
against that algorithm, which is what makes a pinned ``ES256`` key useless
as an HMAC secret or under another algorithm.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from passbridge.errors import PassbridgeError
from passbridge.p256 import load_public_key, public_key_bytes

p256_point = public_key_bytes
"""The point encoding of passbridge/p256.py under the name the token API has used."""

SUPPORTED_ALGS: frozenset[str] = frozenset({"ES256", "EdDSA"})


PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class BadKey(PassbridgeError, ValueError):
    """A key that does not fit its pinned algorithm (wrong type or curve, bad PEM)."""


def generate_private_key(alg: str = "ES256") -> PrivateKey:
    """A fresh key pair for ``alg``: P-256 for ES256, Ed25519 for EdDSA."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise BadKey(f"unsupported algorithm {alg!r} (expected ES256 or EdDSA)")


def private_key_to_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_key_to_pem(key: PublicKey | PrivateKey) -> str:
    public = key.public_key() if isinstance(key, (ec.EllipticCurvePrivateKey,
                                                  ed25519.Ed25519PrivateKey)) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def check_alg(alg: str) -> None:
    """Only the algorithms the contract names; never ``none`` or HMAC."""
    if alg not in SUPPORTED_ALGS:
        raise BadKey(f"unsupported algorithm {alg!r} (expected ES256 or EdDSA)")


def fits(key: object, alg: str) -> bool:
    """Whether ``key`` (public or private) is the type ``alg`` needs."""
    if alg == "ES256":
        return isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)) and (
            isinstance(key.curve, ec.SECP256R1)
        )
    return isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey))


def load_private_key_pem(pem: str | bytes, alg: str) -> PrivateKey:
    """Load an unencrypted PKCS#8 private key and check it is the type ``alg`` needs."""
    check_alg(alg)
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BadKey("not a readable unencrypted PEM private key") from exc
    if not fits(key, alg):
        raise BadKey(f"private key type does not match algorithm {alg}")
    assert isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey))
    return key


def load_public_key_pem(pem: str | bytes, alg: str) -> PublicKey:
    """Load a SubjectPublicKeyInfo PEM and check it is the type ``alg`` needs.

    This check is what makes a pinned ``ES256`` key useless as an HMAC secret
    or under another algorithm.
    """
    check_alg(alg)
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise BadKey("not a readable PEM public key") from exc
    if not fits(key, alg):
        raise BadKey(f"public key type does not match algorithm {alg}")
    assert isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey))
    return key


def p256_public_key_from_point(point: bytes) -> ec.EllipticCurvePublicKey:
    """A phone's public key from its 65-byte uncompressed SEC1 point (BadKey if not one)."""
    try:
        return load_public_key(point)
    except ValueError as exc:
        raise BadKey(f"not a P-256 point: {exc}") from exc
