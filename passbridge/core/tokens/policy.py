"""The token policy: every rule about a token's claims, on the injected clock.

PyJWT (``jwt.PyJWS``) verifies the signature with the algorithm pinned per
key. Its claim checks (``jwt.decode``) read the real wall clock, and
scenarios run in other years, so the claims are checked here instead,
against the injectable clock, with the rest of the contract (interfaces.md,
"Factor tokens"): the header ``typ``, the audience, the issuer bound to the
key, required claims and their types, the lifetime caps, the leeway, and
the single-use ``jti`` record. Each check follows PyJWT's rule where PyJWT
has one (a null claim counts as missing; ``aud`` a string or a list of
strings; ``sub`` a string). One policy per kind of token; the numbers live
in ``passbridge/core/policy.py`` with the contract's other numbers.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from passbridge.core.policy import (
    DEFAULT_LEEWAY,
    MAX_CLAIM_CHARS,
    MAX_JTI_CHARS,
    MIN_JTI_CHARS,
)
from passbridge.core.tokens.trust import VerificationKey


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """What one kind of token must satisfy beyond what PyJWT checked.

    ``typ``: the accepted header ``typ`` values (``None`` in it = absent;
    ``typ`` None = not checked, for a phone's request).
    ``string_claims``: claims that must be non-empty strings (PyJWT checks
    they are present). ``replay_scope``: the claim that scopes the ``jti``
    (``iss`` or ``cred``), so that two issuers never collide.
    ``check_claims``: the caller's own rule given the claims and the key that
    signed them, a detail string for a claim set it cannot use.
    ``required``: the claims that must be present and not null.
    """

    audience: str | None
    typ: frozenset[str | None] | None
    string_claims: tuple[str, ...]
    max_lifetime: float
    leeway: float
    replay_scope: str
    check_claims: Callable[[dict[str, Any], VerificationKey], str | None] | None
    required: tuple[str, ...]

    def header_problem(self, header: Mapping[str, Any]) -> str | None:
        if self.typ is not None and header.get("typ") not in self.typ:
            return "wrong token type"
        if "crit" in header or header.get("b64", True) is not True:
            return "unsupported header parameters"
        return None

    def claims_problem(self, claims: dict[str, Any], key: VerificationKey) -> str | None:
        """Presence, audience, issuer, types, lengths and the lifetime cap; then
        the caller's own rule."""
        for name in self.required:
            if claims.get(name) is None:
                return f"missing claim {name}"
        if self.audience is not None:
            aud = claims["aud"]
            audiences = [aud] if type(aud) is str else aud
            if type(audiences) is not list or any(type(a) is not str for a in audiences):
                return "wrong audience (not a string or list of strings)"
            if self.audience not in audiences:
                return "wrong audience"
        if key.issuer is not None and claims.get("iss") != key.issuer:
            return "issuer does not match the signing key"
        if "sub" in claims and type(claims["sub"]) is not str:
            return "claim sub must be a string"
        for name in self.string_claims:
            value = claims[name]
            if type(value) is not str or not 0 < len(value) <= MAX_CLAIM_CHARS:
                return f"claim {name} must be a non-empty string"
        jti = claims["jti"]
        if type(jti) is not str or not MIN_JTI_CHARS <= len(jti) <= MAX_JTI_CHARS:
            return "jti must be a string of 22-128 characters"
        times = [claims["iat"], claims["exp"], claims.get("nbf", 0)]
        # JSON gives int, float or bool; bool is not a time, NaN and infinity are none.
        if any(type(t) is not int and (type(t) is not float or not math.isfinite(t))
               for t in times):
            return "iat, exp and nbf must be finite numbers"
        iat, exp = claims["iat"], claims["exp"]
        if not exp > iat:
            return "exp must be after iat"
        if exp - iat > self.max_lifetime:
            return f"lifetime over {self.max_lifetime:g} s"
        return None if self.check_claims is None else self.check_claims(claims, key)

    def time_problem(self, claims: dict[str, Any], now: float) -> str | None:
        """``iat``, ``nbf`` and ``exp`` against the injected clock, with the leeway.

        ``"expired"`` is the one answer that becomes ``token_expired``.
        """
        if claims["iat"] > now + self.leeway:
            return "issued in the future"
        if claims.get("nbf", 0) > now + self.leeway:
            return "not yet valid"
        if now > claims["exp"] + self.leeway:
            return "expired"
        return None

    def replay_key(self, claims: dict[str, Any]) -> str:
        scope = claims.get(self.replay_scope)
        return f"{scope if type(scope) is str else ''}\x00{claims['jti']}"


def policy(
    *,
    audience: str | None,
    typ: Collection[str | None] | None,
    string_claims: Collection[str],
    max_lifetime: float,
    leeway: float = DEFAULT_LEEWAY,
    replay_scope: str = "iss",
    check_claims: Callable[[dict[str, Any], VerificationKey], str | None] | None = None,
) -> TokenPolicy:
    """A policy; ``audience`` None skips the audience check (a phone's request has none)."""
    strings = tuple(string_claims)
    required = ("iat", "exp", "jti", *strings, *(("aud",) if audience is not None else ()))
    return TokenPolicy(audience, None if typ is None else frozenset(typ), strings,
                       float(max_lifetime), float(leeway), replay_scope, check_claims, required)


class ReplayVerdict(Enum):
    FRESH = "fresh"
    REPLAYED = "replayed"
    FULL = "full"


class ReplayCache:
    """Single-use record of token ids, kept until each one's expiry plus leeway.

    Bounded: when full of unexpired entries it refuses new tokens rather than
    forgetting one still in its lifetime, which would let that token be
    replayed. Expired ids are pruned lazily, oldest expiry first (a heap).
    Not thread-safe, like the core it belongs to: the service calls both
    from its one event loop.
    """

    def __init__(self, max_entries: int = 1_000_000, *, leeway: float = DEFAULT_LEEWAY) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.leeway = leeway
        self._seen: set[str] = set()
        self._expiries: list[tuple[float, str]] = []  # a heap of (expiry, key)

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, key: str, expires_at: float, now: float) -> ReplayVerdict:
        """Record ``key`` as used until ``expires_at`` (epoch seconds)."""
        expiries = self._expiries
        while expiries and expiries[0][0] + self.leeway < now:
            self._seen.discard(heapq.heappop(expiries)[1])
        if key in self._seen:
            return ReplayVerdict.REPLAYED
        if len(self._seen) >= self.max_entries:
            return ReplayVerdict.FULL
        self._seen.add(key)
        heapq.heappush(expiries, (expires_at, key))
        return ReplayVerdict.FRESH
