"""Factor tokens (bridge -> core): how a mobile factor earns the core's trust.

The core accepts mobile factors only as these tokens. The bridge side mints
one per accepted factor; the core side turns it into a VerifiedFactor (or
the plain tuple the core's hot path uses) or a rejection, never raising.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from passbridge.clock import Clock
from passbridge.core.model import Factor, Side, TrustedKey
from passbridge.core.tokens.compact import _b64url, _compact_json
from passbridge.core.tokens.jws import (
    _NUMBER_TYPES,
    TokenRejection,
    _check,
    _epoch_seconds,
    _header_key,
    _invalid,
    _Policy,
)
from passbridge.core.tokens.keys import BadKey, PrivateKey, _check_alg, _fits, _same_public_key
from passbridge.core.tokens.limits import (
    DEFAULT_LEEWAY,
    FACTOR_MAX_LIFETIME,
    MAX_JTI_CHARS,
    MIN_JTI_CHARS,
)
from passbridge.core.tokens.minted import MintedTokens
from passbridge.core.tokens.replay import ReplayCache
from passbridge.core.tokens.signatures import _signer
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
    issued_at: datetime
    expires_at: datetime

    @property
    def ok(self) -> bool:
        return True


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
    """The bridge side: signs one accepted factor into a short-lived token.

    ``record``: a MintedTokens this minter adds every token to, for a
    verifier in the same process (see MintedTokens); it must be made for
    this minter's own public key.
    """

    def __init__(
        self,
        bridge_id: str,
        private_key: PrivateKey,
        *,
        alg: str = "ES256",
        kid: str | None = None,
        site_id: str,
        clock: Clock,
        lifetime: float = 10.0,
        record: MintedTokens | None = None,
    ) -> None:
        _check_alg(alg)
        if not _fits(private_key, alg):
            raise BadKey(f"private key type does not match algorithm {alg}")
        if record is not None and not _same_public_key(record.public_key, private_key):
            raise BadKey("the minted-token record is for another key")
        self._exp_after = _checked_lifetime(lifetime)
        self.bridge_id = bridge_id
        self.kid = kid if kid is not None else bridge_id
        self.alg = alg
        self.site_id = site_id
        self.lifetime = lifetime
        self._clock = clock
        self._now = _epoch_seconds(clock)
        self._key = private_key
        self._record = record
        # Every token of this minter has the same protected header, so its
        # segment is encoded once, exactly as PyJWT's encode would (sorted
        # keys, compact separators). Signing then takes the prepared key
        # directly: PyJWT's encode re-prepares the key, rebuilds the header
        # and goes through ``int`` to turn the DER signature into ``r || s``
        # on every token. A kid or issuer that is not a string keeps PyJWT's
        # own path (and its TypeError).
        self._sign: Callable[[bytes], bytes] | None = None
        if isinstance(self.kid, str) and isinstance(bridge_id, str):
            header = {"alg": alg, "kid": self.kid, "typ": FACTOR_TOKEN_TYP}
            self._head = _b64url(json.dumps(header, separators=(",", ":"), sort_keys=True)
                                 .encode()) + b"."
            self._sign = _signer(alg, private_key)

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
        factor = factor if type(factor) is Factor else Factor(factor)
        if factor not in TOKEN_FACTORS:
            raise ValueError(f"factor {factor} is never sent as a token")
        side = side if type(side) is Side else Side(side)
        iat = int(self._now())
        claims = {
            "iss": self.bridge_id,
            "aud": self.site_id,
            "sub": user,
            "door": door,
            "side": _SIDE_TEXT[side],
            "factor": _FACTOR_TEXT[factor],
            "cred": credential,
            "iat": iat,
            "exp": iat + self._exp_after,
            "jti": new_jti(),
            "ev": evidence or {},
        }
        sign = self._sign
        if sign is None:
            headers = {"kid": self.kid, "typ": FACTOR_TOKEN_TYP}
            token = jwt.encode(claims, self._key, algorithm=self.alg, headers=headers)
        else:
            signing_input = self._head + _b64url(_compact_json(claims).encode())
            token = (signing_input + b"." + _b64url(sign(signing_input))).decode("ascii")
        if self._record is not None:
            self._record.add(token)
        return token


# What FactorTokenVerifier.verify_fields gives the core for a good token:
# user, door, side, factor, credential, evidence, jti.
FactorFields = tuple[str, str, Side, Factor, str, dict[str, Any], str]
_HEADER_VERDICTS_MAX = 64


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
        minted_here: MintedTokens | None = None,
    ) -> None:
        self.site_id = site_id
        self._keys = verification_keys(keys)
        # The in-process minter's record, and the kids of this trust list
        # that hold its public key: the only keys its vouch stands in for.
        self._minted_here = minted_here
        self._vouch_kids = frozenset(
            kid for kid, key in self._keys.items()
            if minted_here is not None and _same_public_key(key.key, minted_here.public_key)
        )
        self._resolve = by_kid(self._keys)
        self._clock = clock
        self._now = _epoch_seconds(clock)
        self.replay_cache = replay_cache if replay_cache is not None else ReplayCache(leeway=leeway)
        # Header segment -> the key it picks or why none. A factor token's key
        # depends on its header alone (kid, alg, typ) and this verifier's
        # fixed trust list, and a bridge sends the same header every time.
        self._header_verdicts: dict[bytes, VerificationKey | TokenRejection] = {}
        self.leeway = leeway

    @property
    def leeway(self) -> float:
        return self._policy.leeway

    @leeway.setter
    def leeway(self, seconds: float) -> None:
        self._policy = _Policy.make(
            audience=self.site_id, typ=(FACTOR_TOKEN_TYP,),
            string_claims=("iss", "sub", "door", "side", "factor", "cred"),
            max_lifetime=FACTOR_MAX_LIFETIME, leeway=seconds, replay_scope="iss",
            check_claims=_factor_claims_problem, claims_pass=_factor_claims_pass,
            check_key=_bridge_scope_problem,
        )
        self._header_verdicts = {}

    def _header_key(
        self, head: bytes, header: dict[str, Any], unverified: dict[str, Any]
    ) -> VerificationKey | TokenRejection:
        verdicts = self._header_verdicts
        verdict = verdicts.get(head)
        if verdict is None:
            verdict = _header_key(header, unverified, self._policy, self._resolve)
            if len(verdicts) >= _HEADER_VERDICTS_MAX:
                verdicts.clear()  # a flood of distinct headers only empties it
            verdicts[head] = verdict
        return verdict

    def _vouched(self, key: VerificationKey, data: bytes) -> bool:
        """Whether the in-process minter made exactly these bytes (see MintedTokens)."""
        minted = self._minted_here
        return minted is not None and key.kid in self._vouch_kids and minted.take(data)

    def verify_fields(self, token: object) -> FactorFields | TokenRejection:
        """What the core needs of a good token, as a plain tuple; never raises.

        Exactly the checks of ``verify``, without making a VerifiedFactor and
        its datetimes on the core's hot path.
        """
        try:
            checked = _check(token, self._header_key, self._policy, self._now,
                             self.replay_cache, self._vouched)
            if isinstance(checked, TokenRejection):
                return checked
            claims = checked[1]
            return (
                claims["sub"], claims["door"], _SIDE_BY_VALUE[claims["side"]],
                _FACTOR_BY_VALUE[claims["factor"]], claims["cred"], claims["ev"], checked[3],
            )
        except Exception as exc:  # noqa: BLE001 - any surprise is a refusal, never a grant
            return _invalid(f"malformed token ({type(exc).__name__})")

    def verify(self, token: object) -> VerifiedFactor | TokenRejection:
        """Never raises: every token either becomes a VerifiedFactor or is refused."""
        try:
            checked = _check(token, self._header_key, self._policy, self._now,
                             self.replay_cache, self._vouched)
            if isinstance(checked, TokenRejection):
                return checked
            _header, claims, _key, jti, iat, exp = checked
            return VerifiedFactor(
                user=claims["sub"],
                door=claims["door"],
                side=_SIDE_BY_VALUE[claims["side"]],
                factor=_FACTOR_BY_VALUE[claims["factor"]],
                credential=claims["cred"],
                evidence=claims["ev"],
                jti=jti,
                issuer=claims["iss"],
                issued_at=datetime.fromtimestamp(iat, UTC),
                expires_at=datetime.fromtimestamp(exp, UTC),
            )
        except Exception as exc:  # noqa: BLE001 - any surprise is a refusal, never a grant
            return _invalid(f"malformed token ({type(exc).__name__})")


_SIDE_BY_VALUE: dict[str, Side] = {s.value: s for s in Side}
_SIDE_TEXT: dict[Side, str] = {s: s.value for s in Side}
_FACTOR_TEXT: dict[Factor, str] = {f: f.value for f in Factor}
_FACTOR_BY_VALUE: dict[str, Factor] = {f.value: f for f in TOKEN_FACTORS}
_SIDES = frozenset(_SIDE_BY_VALUE)
_TOKEN_FACTOR_VALUES = frozenset(_FACTOR_BY_VALUE)


def _factor_claims_pass(claims: dict[str, Any], issuer: str | None, audience: str | None) -> bool:
    """The factor policy's claim checks as one expression, for the common case.

    True only when ``_claims_problem`` (with ``_factor_claims_problem``)
    would find nothing: every condition here implies one of its checks
    passes, and each of its checks is implied by one here. Anything unusual
    (an ``nbf``, an audience list, any doubt) is False, and the careful
    checks then give the exact reason.
    """
    get = claims.get
    iss, sub, door, cred = get("iss"), get("sub"), get("door"), get("cred")
    side, factor, jti, aud = get("side"), get("factor"), get("jti"), get("aud")
    iat: Any = get("iat")
    exp: Any = get("exp")
    return (
        type(iss) is str and 0 < len(iss) <= 256 and (issuer is None or iss == issuer)
        and type(sub) is str and 0 < len(sub) <= 256
        and type(door) is str and 0 < len(door) <= 256
        and type(cred) is str and 0 < len(cred) <= 256
        and type(side) is str and side in _SIDES
        and type(factor) is str and factor in _TOKEN_FACTOR_VALUES
        and type(jti) is str and MIN_JTI_CHARS <= len(jti) <= MAX_JTI_CHARS
        and type(iat) in _NUMBER_TYPES and type(exp) in _NUMBER_TYPES
        and exp > iat and exp - iat <= FACTOR_MAX_LIFETIME
        and audience is not None and type(aud) is str and aud == audience
        and get("nbf") is None
        and type(get("ev")) is dict
    )


def _bridge_scope_problem(claims: dict[str, Any], key: VerificationKey) -> str | None:
    """A bridge vouches only for the doors and factors its trust entry names.

    Checked after the signature and the claim shapes, before the times and
    the ``jti`` record: the token is genuine, so its refusal is an audited
    ``token_invalid`` decision, and it burns only its own ``jti``.
    """
    doors, factors = key.doors, key.factors
    if doors is not None and claims["door"] not in doors:
        return f"bridge {key.kid!r} may not vouch for door {claims['door']!r}"
    if factors is not None and claims["factor"] not in factors:
        return f"bridge {key.kid!r} may not vouch for {claims['factor']} factors"
    return None


def _factor_claims_problem(claims: dict[str, Any]) -> str | None:
    if claims["side"] not in _SIDES:
        return "unknown side"
    if claims["factor"] not in _TOKEN_FACTOR_VALUES:
        return "unknown factor"
    if not isinstance(claims.get("ev"), dict):
        return "ev must be an object"
    return None
