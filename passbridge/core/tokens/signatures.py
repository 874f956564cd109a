"""Signature checks and signers for the pinned algorithms, made once per key.

An ``EdDSA`` signature is checked by PyJWT's own algorithm object; an
``ES256`` one by the same pyca/cryptography call that object makes, minus
its per-token overhead (a fresh ``ECDSA`` object and ``int``-based DER
encoding every time): the raw ``r || s`` is wrapped in DER directly and
verified with the prepared key. Signing takes the same shortcut the other
way (DER to ``r || s`` without going through ``int``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from jwt.algorithms import Algorithm

from passbridge.core.tokens.keys import SUPPORTED_ALGS, PrivateKey, _fits


def _prepare(alg: str, key: object) -> tuple[Algorithm, Any] | None:
    """PyJWT's verifier for ``alg`` and ``key`` prepared for it, if they belong together."""
    if alg not in SUPPORTED_ALGS or not _fits(key, alg):
        return None
    algorithm = jwt.get_algorithm_by_name(alg)
    try:
        prepared = algorithm.prepare_key(key)
    except (jwt.InvalidKeyError, TypeError, ValueError):
        return None
    if algorithm.check_key_length(prepared):
        return None
    return algorithm, prepared


SignatureCheck = Callable[[bytes, bytes], bool]

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
# DER pieces for a P-256 (r, s) pair whose halves both start with a non-zero
# byte (all but about 1 in 128 signatures): INTEGER headers by the half's top
# bit (set: a 0x00 byte keeps it positive), SEQUENCE header by how many
# halves needed that byte.
_DER_INTEGER = (b"\x02\x20", b"\x02\x21\x00")
_DER_SEQUENCE = (b"\x30\x44", b"\x30\x45", b"\x30\x46")


def p256_raw_to_der(raw: bytes) -> bytes:
    """The DER ECDSA-Sig-Value of a 64-byte JWS ``r || s`` signature.

    The same bytes as ``encode_dss_signature`` of the two halves (a
    property test holds it to that), built directly in the common case.
    """
    if len(raw) != 64:
        raise ValueError("an ES256 signature is 64 bytes")
    r, s = raw[:32], raw[32:]
    r0, s0 = r[0], s[0]
    if r0 and s0:
        hr, hs = r0 >> 7, s0 >> 7
        return b"".join((_DER_SEQUENCE[hr + hs], _DER_INTEGER[hr], r, _DER_INTEGER[hs], s))
    return encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))


def _signature_check(alg: str, key: object) -> SignatureCheck | None:
    """A ``(signing input, signature) -> bool`` check for a key pinned to ``alg``.

    None for a key that does not fit its algorithm (PyJWT's ``prepare_key``
    and key-length checks decide), which then verifies nothing. ES256 makes
    the call PyJWT's ``ECAlgorithm.verify`` makes, with the same outcome for
    every input: a signature that is not 64 bytes, or does not verify, is
    False.
    """
    jws = _prepare(alg, key)
    if jws is None:
        return None
    algorithm, prepared = jws
    if alg != "ES256":
        def by_pyjwt(message: bytes, signature: bytes) -> bool:
            return bool(algorithm.verify(message, prepared, signature))

        return by_pyjwt
    public = prepared.public_key() if isinstance(prepared, ec.EllipticCurvePrivateKey) else prepared
    assert isinstance(public, ec.EllipticCurvePublicKey)
    verify = public.verify

    def es256(message: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        # p256_raw_to_der, inlined for the common case.
        r0, s0 = signature[0], signature[32]
        if r0 and s0:
            hr, hs = r0 >> 7, s0 >> 7
            der = b"".join((_DER_SEQUENCE[hr + hs], _DER_INTEGER[hr], signature[:32],
                            _DER_INTEGER[hs], signature[32:]))
        else:
            der = p256_raw_to_der(signature)
        try:
            verify(der, message, _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True

    return es256


def p256_der_to_raw(der: bytes) -> bytes:
    """The 64-byte JWS ``r || s`` of a DER ECDSA-Sig-Value from a P-256 key.

    The same bytes as PyJWT's ``der_to_raw_signature``; the DER is read
    directly in the shapes a P-256 signer emits, anything else by
    ``decode_dss_signature``.
    """
    if len(der) >= 8 and der[0] == 0x30 and der[1] == len(der) - 2 and der[2] == 0x02:
        rlen = der[3]
        r = der[4: 4 + rlen]
        at = 4 + rlen
        if at + 2 <= len(der) and der[at] == 0x02 and 1 <= rlen <= 33:
            slen = der[at + 1]
            s = der[at + 2:]
            if len(s) == slen and 1 <= slen <= 33 and r[0] < 0x80 and s[0] < 0x80:
                r, s = r.lstrip(b"\x00"), s.lstrip(b"\x00")
                if len(r) <= 32 and len(s) <= 32:
                    return r.rjust(32, b"\x00") + s.rjust(32, b"\x00")
    r_int, s_int = decode_dss_signature(der)
    return r_int.to_bytes(32, "big") + s_int.to_bytes(32, "big")


def _signer(alg: str, key: PrivateKey) -> Callable[[bytes], bytes]:
    """``signing input -> raw JWS signature`` for a private key that fits ``alg``."""
    if alg == "ES256":
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        sign_ec = key.sign

        def es256(message: bytes) -> bytes:
            return p256_der_to_raw(sign_ec(message, _ECDSA_SHA256))

        return es256
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key.sign
