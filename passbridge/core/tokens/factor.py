"""Factor tokens (bridge -> core): how a mobile factor earns the core's trust.

The core accepts mobile factors only as these tokens. A bridge mints one per
accepted factor with ``jwt.encode``; the core turns it into a VerifiedFactor
or a rejection, never raising, whether the bridge runs in this process or on
another host: every token is verified in full (interfaces.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from passbridge.clock import Clock
from passbridge.core.model import Factor, Side, TrustedKey
from passbridge.core.policy import (
    DEFAULT_LEEWAY,
    FACTOR_DEFAULT_LIFETIME,
    FACTOR_MAX_LIFETIME,
)
from passbridge.core.tokens.jws import KnownHeaders, TokenRejection, verify_jws
from passbridge.core.tokens.keys import BadKey, PrivateKey, check_alg, fits
from passbridge.core.tokens.policy import ReplayCache, TokenPolicy, policy
from passbridge.core.tokens.trust import VerificationKey, by_kid, verification_keys

FACTOR_TOKEN_TYP = "pb-factor+jwt"  # noqa: S105 - a media type, not a secret


# Factors a bridge may sign; a PIN never travels as a token.
TOKEN_FACTORS: frozenset[Factor] = frozenset(
    {Factor.NFC, Factor.BLE, Factor.NEARBY, Factor.REMOTE, Factor.CARD}
)


@dataclass(frozen=True, slots=True)
class VerifiedFactor:
    """A mobile factor the core may decide on: who, where, how, and the evidence."""

    user: str
    door: str
    side: Side
    factor: Factor
    credential: str
    evidence: dict[str, Any]
    jti: str
    issuer: str
    iat: int | float
    exp: int | float

    @property
    def ok(self) -> bool:
        return True

    @property
    def issued_at(self) -> datetime:
        return datetime.fromtimestamp(self.iat, UTC)

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.exp, UTC)


def new_jti() -> str:
    """192 random bits, URL-safe: comfortably over the 128 the contract asks for."""
    return secrets.token_urlsafe(24)


def _checked_lifetime(lifetime: object) -> int | float:
    """A minter's lifetime as the number to add to ``iat``, or a clear ValueError.

    Checked once at construction so that a bad setting fails where it is
    made, not at the first tap. ``int`` and ``float`` are both accepted (an
    ``int`` has no ``is_integer`` on Python 3.11, which once crashed
    ``mint``); a whole number becomes an ``int`` so ``exp`` stays an integer
    claim, as PyJWT writes it. ``bool``, NaN and anything not a number are
    refused rather than coerced.
    """
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
        raise ValueError(f"lifetime must be a number of seconds, not {lifetime!r}")
    if not 0 < lifetime <= FACTOR_MAX_LIFETIME:  # also false for NaN
        raise ValueError(
            f"lifetime must be in (0, {FACTOR_MAX_LIFETIME:g}] seconds, not {lifetime!r}"
        )
    return int(lifetime) if float(lifetime).is_integer() else float(lifetime)


class FactorTokenMinter:
    """The bridge side: signs one accepted factor into a short-lived token (PyJWT)."""

    def __init__(
        self,
        bridge_id: str,
        private_key: PrivateKey,
        *,
        alg: str = "ES256",
        kid: str | None = None,
        site_id: str,
        clock: Clock,
        lifetime: float = FACTOR_DEFAULT_LIFETIME,
    ) -> None:
        check_alg(alg)
        if not fits(private_key, alg):
            raise BadKey(f"private key type does not match algorithm {alg}")
        self._exp_after = _checked_lifetime(lifetime)
        self.bridge_id = bridge_id
        self.kid = kid if kid is not None else bridge_id
        self.alg = alg
        self.site_id = site_id
        self.lifetime = lifetime
        self._clock = clock
        self._key = private_key
        self._headers = {"kid": self.kid, "typ": FACTOR_TOKEN_TYP}

    def __repr__(self) -> str:
        return f"FactorTokenMinter(bridge_id={self.bridge_id!r}, kid={self.kid!r}, alg={self.alg})"

    def mint(
        self,
        *,
        user: str,
        door: str,
        side: Side,
        factor: Factor,
        credential: str,
        evidence: dict[str, Any] | None = None,
    ) -> str:
        factor = Factor(factor)
        if factor not in TOKEN_FACTORS:
            raise ValueError(f"factor {factor} is never sent as a token")
        iat = int(self._clock.now().timestamp())
        claims = {
            "iss": self.bridge_id,
            "aud": self.site_id,
            "sub": user,
            "door": door,
            "side": Side(side).value,
            "factor": factor.value,
            "cred": credential,
            "iat": iat,
            "exp": iat + self._exp_after,
            "jti": new_jti(),
            "ev": evidence or {},
        }
        return jwt.encode(claims, self._key, algorithm=self.alg, headers=self._headers)


class FactorTokenVerifier:
    """The core side: turns a factor token into a VerifiedFactor or a rejection."""

    def __init__(
        self,
        site_id: str,
        keys: Mapping[str, VerificationKey | TrustedKey] | Collection[TrustedKey],
        *,
        clock: Clock,
        leeway: float = DEFAULT_LEEWAY,
        replay_cache: ReplayCache | None = None,
    ) -> None:
        self.site_id = site_id
        self._keys = verification_keys(keys)
        self._resolve = by_kid(self._keys)
        self._clock = clock
        self.replay_cache = replay_cache if replay_cache is not None else ReplayCache(leeway=leeway)
        self._leeway = leeway
        self.policy: TokenPolicy = factor_policy(site_id, leeway)
        self._known_headers = KnownHeaders()

    def with_keys(
        self, keys: Mapping[str, VerificationKey | TrustedKey] | Collection[TrustedKey]
    ) -> FactorTokenVerifier:
        """The same verifier trusting ``keys`` instead (a site reload): same
        site, clock and leeway, and the SAME replay cache, so a token used
        before the reload cannot be used again after it."""
        return FactorTokenVerifier(self.site_id, keys, clock=self._clock, leeway=self._leeway,
                                   replay_cache=self.replay_cache)

    def verify(self, token: object, at: datetime | None = None) -> VerifiedFactor | TokenRejection:
        """Never raises: every token either becomes a VerifiedFactor or is refused.

        ``at``: the instant to judge the token's times at (the core's
        decision moment); else the verifier's clock is read.
        """
        checked = verify_jws(token, self._resolve, self.policy, clock=self._clock,
                             replay_cache=self.replay_cache, at=at,
                             known_headers=self._known_headers)
        if isinstance(checked, TokenRejection):
            return checked
        claims = checked.claims
        return VerifiedFactor(
            user=claims["sub"],
            door=claims["door"],
            side=_SIDE_BY_TEXT[claims["side"]],
            factor=_FACTOR_BY_TEXT[claims["factor"]],
            credential=claims["cred"],
            evidence=claims["ev"],
            jti=claims["jti"],
            issuer=claims["iss"],
            iat=claims["iat"],
            exp=claims["exp"],
        )


# Claim text -> member. The policy has checked the claim is one of these; a
# dict lookup, because calling the Enum costs a microsecond per token.
_SIDE_BY_TEXT = {s.value: s for s in Side}
_FACTOR_BY_TEXT = {f.value: f for f in TOKEN_FACTORS}


def factor_policy(site_id: str, leeway: float = DEFAULT_LEEWAY) -> TokenPolicy:
    """A factor token: ``typ`` pb-factor+jwt, for this site, life <= 30 s."""
    return policy(
        audience=site_id, typ=(FACTOR_TOKEN_TYP,),
        string_claims=("iss", "sub", "door", "side", "factor", "cred"),
        max_lifetime=FACTOR_MAX_LIFETIME, leeway=leeway, check_claims=_factor_claims_problem,
    )


def _factor_claims_problem(claims: dict[str, Any], key: VerificationKey) -> str | None:
    """The factor's own claims, then the bridge's scope.

    A bridge vouches only for the doors and factors its trust entry names.
    Checked after the signature, before the times and the ``jti`` record:
    the token is genuine, so its refusal is an audited ``token_invalid``
    decision, and it burns only its own ``jti``.
    """
    if claims["side"] not in _SIDE_BY_TEXT:
        return "unknown side"
    if claims["factor"] not in _FACTOR_BY_TEXT:
        return "unknown factor"
    if not isinstance(claims.get("ev"), dict):
        return "ev must be an object"
    if key.doors is not None and claims["door"] not in key.doors:
        return f"bridge {key.kid!r} may not vouch for door {claims['door']!r}"
    if key.factors is not None and claims["factor"] not in key.factors:
        return f"bridge {key.kid!r} may not vouch for {claims['factor']} factors"
    return None
