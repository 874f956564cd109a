"""One signed statement, verified: PyJWT checks the signature, the policy the rest.

Order, on purpose: size and shape, the header's ``typ``, the key (by the
caller's resolver; the algorithm is the key's pinned one, never the
header's), then PyJWT's ``PyJWS.decode_complete`` (strict parsing, the
pinned algorithm, the signature), then the policy on the payload (required
claims, audience, issuer, types, lifetime cap, the caller's rule, times on
the injected clock) and only last the single-use ``jti`` record, so a
forged or stale token can never burn a legitimate token's ``jti``. No claim
is trusted before the signature checks out except what picks the key.
Whatever PyJWT refuses is unverified (anybody's bytes); every later refusal
is of a token a trusted key signed (``verified``).

Every verifier returns a value and never raises: a rejection carries one of
the three token reasons of rules.md section 4 (``token_invalid``,
``token_expired``, ``token_replayed``) and an operator detail that never
contains key material.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import jwt
from jwt.utils import base64url_decode

from passbridge.clock import Clock
from passbridge.core.model import Reason
from passbridge.core.policy import MAX_TOKEN_BYTES
from passbridge.core.tokens.keys import SUPPORTED_ALGS
from passbridge.core.tokens.policy import ReplayCache, ReplayVerdict, TokenPolicy
from passbridge.core.tokens.trust import KeyResolver, VerificationKey
from passbridge.errors import PassbridgeError


@dataclass(frozen=True, slots=True)
class TokenRejection:
    """Why a token was refused: a rules.md reason and a detail for operators.

    ``verified``: the signature checked out against a trusted key and a later
    check refused it (claims, scope, times, replay). Such a token is
    attributable and its refusal is an audited decision; an unverified one
    (not a JWS, unknown key, bad signature) is anybody's input, answered
    without a durable write.
    """

    reason: Reason
    detail: str
    verified: bool = False

    @property
    def ok(self) -> bool:
        return False


class UnverifiedToken(PassbridgeError):
    """A token no trusted key signed, where the caller asked not to decide on it.

    Nothing is attributable to it (anyone can send bytes), so it becomes no
    decision and no audit record: the HTTP edge answers 401 and counts it.
    """

    def __init__(self, rejection: TokenRejection) -> None:
        super().__init__(rejection.detail)
        self.rejection = rejection


@dataclass(frozen=True, slots=True)
class VerifiedJws:
    """A token whose signature, claims and times all checked out, its ``jti`` now spent."""

    header: dict[str, Any]
    claims: dict[str, Any]
    key: VerificationKey

    @property
    def ok(self) -> bool:
        return True

    @property
    def jti(self) -> str:
        return str(self.claims["jti"])

    @property
    def issued_at(self) -> datetime:
        return datetime.fromtimestamp(self.claims["iat"], UTC)

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.claims["exp"], UTC)


def _invalid(detail: str, *, verified: bool = False) -> TokenRejection:
    return TokenRejection(Reason.TOKEN_INVALID, detail, verified)


# PyJWT's JWS layer knowing only the contract's algorithms (no ``none``, no HMAC);
# each call allows just the key's pinned one.
_JWS = jwt.PyJWS(algorithms=sorted(SUPPORTED_ALGS))


def _peek_header(token: str, known: KnownHeaders | None) -> Mapping[str, Any] | None:
    """The unverified header, only to pick the key; PyJWT then reads it again
    strictly, and must read the same."""
    if token.count(".") != 2:
        return None
    segment = token.partition(".")[0]
    return known.parse(segment) if known is not None else _parse_header(segment)


def _parse_header(segment: str) -> Mapping[str, Any] | None:
    """A protected header's JSON object, read-only, or None."""
    try:
        header = json.loads(base64url_decode(segment))
    except (ValueError, RecursionError):
        return None
    return MappingProxyType(header) if isinstance(header, dict) else None


class KnownHeaders:
    """One verifier's protected headers already parsed, by their base64url text.

    Every token one bridge signs carries the same header byte for byte (alg,
    kid, typ), and parsing it again for each token was about 3 us, a sixth of
    what the core adds to PyJWT's own verify (issue 9, scripts/bench_core.py). Only
    the parse is kept, a pure function of the text: the key is looked up in
    the trust list for every token, so nothing here can go stale. Bounded:
    when full it starts again, so junk headers cost only their own parse.
    Owned by one verifier, which a reload replaces.
    """

    def __init__(self, limit: int = 64) -> None:
        self._limit = limit
        self._parsed: dict[str, Mapping[str, Any]] = {}

    def parse(self, segment: str) -> Mapping[str, Any] | None:
        header = self._parsed.get(segment)
        if header is None:
            header = _parse_header(segment)
            if header is not None:
                if len(self._parsed) >= self._limit:
                    self._parsed.clear()
                self._parsed[segment] = header
        return header


def verify_jws(
    token: object,
    resolve_key: KeyResolver,
    policy: TokenPolicy,
    *,
    clock: Clock,
    replay_cache: ReplayCache,
    at: datetime | None = None,
    known_headers: KnownHeaders | None = None,
) -> VerifiedJws | TokenRejection:
    """Verify one compact JWS against ``policy``; never raises.

    ``at``: the instant to check the times at, when the caller has read the
    clock already (the core passes its decision's moment, so that a token
    and the decision on it are judged at one instant); else ``clock.now()``.
    ``known_headers``: the calling verifier's parsed headers, if it keeps them.
    """
    try:
        return _verify(token, resolve_key, policy, clock.now() if at is None else at,
                       replay_cache, known_headers)
    except Exception as exc:  # any surprise is a refusal, never a grant
        return _invalid(f"malformed token ({type(exc).__name__})")


def _verify(
    token: object,
    resolve_key: KeyResolver,
    policy: TokenPolicy,
    at: datetime,
    replay_cache: ReplayCache,
    known_headers: KnownHeaders | None,
) -> VerifiedJws | TokenRejection:
    # --- size and shape
    if isinstance(token, bytes):
        if len(token) > MAX_TOKEN_BYTES:
            return _invalid("token too large")
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            return _invalid("token is not ASCII")
    if not isinstance(token, str):
        return _invalid("token is not a string")
    if len(token) > MAX_TOKEN_BYTES:
        return _invalid("token too large")
    if not token.isascii():
        return _invalid("token is not ASCII")
    header = _peek_header(token, known_headers)
    if header is None:
        return _invalid("not a compact JWS")

    # --- header and key
    problem = policy.header_problem(header)
    if problem is not None:
        return _invalid(problem)
    if "kid" in header and not isinstance(header["kid"], str):
        return _invalid("unknown key (kid is not a string)")
    key = resolve_key(header, token)
    if key is None:
        return _invalid("unknown key")

    # --- strict parsing, the pinned algorithm, the signature: PyJWT
    try:
        decoded = _JWS.decode_complete(token, key.key, algorithms=[key.alg])
    except jwt.InvalidAlgorithmError:
        return _invalid("algorithm is not the key's pinned algorithm")
    except jwt.InvalidSignatureError:
        return _invalid("bad signature")
    except jwt.PyJWTError as exc:
        return _invalid(f"not a JWS PyJWT accepts ({exc})")
    if decoded["header"] != header:
        return _invalid("header is not canonical base64url")
    try:
        claims = json.loads(decoded["payload"])
    except (ValueError, RecursionError):
        claims = None
    if type(claims) is not dict:
        return _invalid("payload is not a JSON object", verified=True)

    # --- our policy, then the times on the injected clock
    problem = policy.claims_problem(claims, key)
    if problem is not None:
        return _invalid(problem, verified=True)
    now = at.timestamp()
    problem = policy.time_problem(claims, now)
    if problem == "expired":
        return TokenRejection(Reason.TOKEN_EXPIRED, "token expired", verified=True)
    if problem is not None:
        return _invalid(problem, verified=True)

    # --- single use, last: nothing above can burn a genuine token's jti
    verdict = replay_cache.check_and_add(policy.replay_key(claims), float(claims["exp"]), now)
    if verdict is ReplayVerdict.REPLAYED:
        return TokenRejection(Reason.TOKEN_REPLAYED, "token already used", verified=True)
    if verdict is ReplayVerdict.FULL:
        return _invalid("replay cache full", verified=True)
    return VerifiedJws(decoded["header"], claims, key)
