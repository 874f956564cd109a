"""Signed tokens: how a mobile factor (and a remote or nearby request) earns the core's trust.

This lives in the core because the core verifies every signed statement it
decides on itself (interfaces.md), in-process bridges included. PyJWT mints
every token and verifies every signature, with the algorithm pinned per key
from configuration; PyJWT's own time checks are off, because it can only
read the real wall clock and scenarios run in other years: ``policy`` checks
the times on the injected clock, with the other rules PyJWT does not know.

Where each rule lives:

- ``keys``: generating, loading and writing keys; P-256 points.
- ``trust``: VerificationKey (algorithm pinned, issuer, scope), trust lists by ``kid``.
- ``policy``: the numbers, ``typ``, lifetime caps, leeway, times, the ``jti`` record.
- ``jws``: one verification, in order: shape, key, PyJWT, policy, replay.
- ``factor``: factor tokens, minted by a bridge and verified by the core.
- ``backend_requests``, ``nearby_requests``: the app backend's and a phone's requests.
"""

from __future__ import annotations

from passbridge.core.policy import (
    BACKEND_MAX_LIFETIME,
    DEFAULT_LEEWAY,
    FACTOR_MAX_LIFETIME,
    MAX_JTI_CHARS,
    MAX_TOKEN_BYTES,
    MIN_JTI_CHARS,
    NEARBY_MAX_LIFETIME,
)
from passbridge.core.tokens.backend_requests import (
    VerifiedBackendRequest,
    backend_policy,
    verify_backend_request,
)
from passbridge.core.tokens.factor import (
    FACTOR_TOKEN_TYP,
    TOKEN_FACTORS,
    FactorTokenMinter,
    FactorTokenVerifier,
    VerifiedFactor,
    factor_policy,
    new_jti,
)
from passbridge.core.tokens.jws import (
    KnownHeaders,
    TokenRejection,
    UnverifiedToken,
    VerifiedJws,
    verify_jws,
)
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
from passbridge.core.tokens.nearby_requests import (
    RefusedNearbyRequest,
    VerifiedNearbyRequest,
    verify_nearby_request,
)
from passbridge.core.tokens.policy import ReplayCache, ReplayVerdict, TokenPolicy
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
    "FactorTokenMinter",
    "FactorTokenVerifier",
    "KeyResolver",
    "PrivateKey",
    "PublicKey",
    "RefusedNearbyRequest",
    "ReplayCache",
    "ReplayVerdict",
    "TokenPolicy",
    "KnownHeaders",
    "TokenRejection",
    "UnverifiedToken",
    "VerificationKey",
    "VerifiedBackendRequest",
    "VerifiedFactor",
    "VerifiedJws",
    "VerifiedNearbyRequest",
    "backend_policy",
    "by_kid",
    "by_kid_or_issuer",
    "factor_policy",
    "generate_private_key",
    "load_private_key_pem",
    "load_public_key_pem",
    "new_jti",
    "p256_point",
    "p256_public_key_from_point",
    "private_key_to_pem",
    "public_key_to_pem",
    "verification_keys",
    "verify_backend_request",
    "verify_jws",
    "verify_nearby_request",
]
