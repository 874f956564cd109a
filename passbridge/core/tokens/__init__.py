"""Signed tokens: how a mobile factor (and a remote or nearby request) earns the core's trust.

This lives in the core because the core accepts mobile factors only as
tokens; it does no I/O. PyJWT mints every token and prepares (and so
validates) every verification key once, when the trust list is loaded. An
``EdDSA`` signature is checked by PyJWT's own algorithm object; an ``ES256``
one by the same pyca/cryptography call that object makes, minus its
per-token overhead (a fresh ``ECDSA`` object and ``int``-based DER encoding
every time): the raw ``r || s`` is wrapped in DER directly and verified with
the prepared key. The compact serialisation is
parsed here, once, with PyJWT's strictness (URL-safe alphabet only,
canonical base64, padding only where PyJWT allows it), because
``jwt.decode`` would parse it a second time character by character and that
costs more than the signature check itself on a busy door. The audience,
required-claim and ``sub``/``jti`` type checks that ``jwt.decode`` would run
are made here with the same rules; everything about time is checked against
the injected clock, because PyJWT can only read the real wall clock and
scenarios run in other years.

Every verifier returns a value and never raises, whatever the input: a
rejection carries one of the three token reasons of rules.md section 4
(``token_invalid``, ``token_expired``, ``token_replayed``) and an operator
detail that never contains key material.

Order of checks, on purpose: size and shape, key lookup, signature,
claim types, times, and only then the single-use ``jti`` record, so a forged
or stale token can never burn a legitimate token's ``jti``. No claim is
trusted before the signature checks out except what picks the key.

Where each rule lives:

- ``limits``: sizes, lifetimes, leeway and ``jti`` lengths.
- ``keys``: generating, loading and writing keys; P-256 points.
- ``signatures``: per-key signature checks and signers (ES256 DER <-> ``r || s``).
- ``trust``: VerificationKey, trust lists by ``kid``.
- ``compact``: base64url and JSON of the compact serialisation, strictly.
- ``jws``: the shared careful verification (``verify_jws``, policies, rejections).
- ``replay``: the single-use ``jti`` record.
- ``minted``: the in-process minter's vouch for its own tokens.
- ``factor``: factor tokens, minted by a bridge and verified by the core.
- ``backend_requests``, ``nearby_requests``: the app backend's and a phone's requests.
"""

from __future__ import annotations

from passbridge.core.tokens.backend_requests import (
    VerifiedBackendRequest,
    verify_backend_request,
)
from passbridge.core.tokens.backend_requests import _backend_policy as _backend_policy
from passbridge.core.tokens.compact import _unb64 as _unb64
from passbridge.core.tokens.factor import (
    FACTOR_TOKEN_TYP,
    TOKEN_FACTORS,
    FactorFields,
    FactorTokenMinter,
    FactorTokenVerifier,
    VerifiedFactor,
    new_jti,
)
from passbridge.core.tokens.jws import (
    HeaderVerdict,
    TokenRejection,
    UnverifiedToken,
    VerifiedJws,
    Vouch,
    verify_jws,
)
from passbridge.core.tokens.jws import _claims_problem as _claims_problem
from passbridge.core.tokens.keys import (
    SUPPORTED_ALGS,
    BadKey,
    PrivateKey,
    PublicKey,
    generate_private_key,
    load_private_key_pem,
    load_public_key_pem,
    p256_point,
    p256_public_key_from_point,
    private_key_to_pem,
    public_key_to_pem,
)
from passbridge.core.tokens.limits import (
    BACKEND_MAX_LIFETIME,
    DEFAULT_LEEWAY,
    FACTOR_MAX_LIFETIME,
    MAX_JTI_CHARS,
    MAX_TOKEN_BYTES,
    MIN_JTI_CHARS,
    NEARBY_MAX_LIFETIME,
)
from passbridge.core.tokens.minted import MintedTokens
from passbridge.core.tokens.nearby_requests import (
    RefusedNearbyRequest,
    VerifiedNearbyRequest,
    verify_nearby_request,
)
from passbridge.core.tokens.replay import ReplayCache, ReplayVerdict
from passbridge.core.tokens.signatures import SignatureCheck, p256_der_to_raw, p256_raw_to_der
from passbridge.core.tokens.trust import (
    KeyResolver,
    VerificationKey,
    by_kid,
    by_kid_or_issuer,
    verification_keys,
)

__all__ = [
    "BACKEND_MAX_LIFETIME",
    "DEFAULT_LEEWAY",
    "FACTOR_MAX_LIFETIME",
    "FACTOR_TOKEN_TYP",
    "MAX_JTI_CHARS",
    "MAX_TOKEN_BYTES",
    "MIN_JTI_CHARS",
    "NEARBY_MAX_LIFETIME",
    "SUPPORTED_ALGS",
    "TOKEN_FACTORS",
    "BadKey",
    "FactorFields",
    "FactorTokenMinter",
    "FactorTokenVerifier",
    "HeaderVerdict",
    "KeyResolver",
    "MintedTokens",
    "PrivateKey",
    "PublicKey",
    "RefusedNearbyRequest",
    "ReplayCache",
    "ReplayVerdict",
    "SignatureCheck",
    "TokenRejection",
    "UnverifiedToken",
    "VerificationKey",
    "VerifiedBackendRequest",
    "VerifiedFactor",
    "VerifiedJws",
    "VerifiedNearbyRequest",
    "Vouch",
    "by_kid",
    "by_kid_or_issuer",
    "generate_private_key",
    "load_private_key_pem",
    "load_public_key_pem",
    "new_jti",
    "p256_der_to_raw",
    "p256_point",
    "p256_public_key_from_point",
    "p256_raw_to_der",
    "private_key_to_pem",
    "public_key_to_pem",
    "verification_keys",
    "verify_backend_request",
    "verify_jws",
    "verify_nearby_request",
]
