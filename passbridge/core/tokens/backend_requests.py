"""Backend-signed requests: remote unlock and admin calls from the app backend."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from passbridge.clock import Clock
from passbridge.core.tokens.jws import (
    _NUMBER_TYPES,
    TokenRejection,
    _check,
    _epoch_seconds,
    _header_key,
    _invalid,
    _Policy,
)
from passbridge.core.tokens.limits import (
    BACKEND_MAX_LIFETIME,
    DEFAULT_LEEWAY,
    MAX_JTI_CHARS,
    MIN_JTI_CHARS,
)
from passbridge.core.tokens.replay import ReplayCache
from passbridge.core.tokens.trust import VerificationKey, by_kid_or_issuer


@dataclass(frozen=True, slots=True)
class VerifiedBackendRequest:
    issuer: str
    user: str
    door: str | None
    role: str | None
    jti: str
    issued_at: datetime
    expires_at: datetime
    claims: dict[str, Any]

    @property
    def ok(self) -> bool:
        return True


def verify_backend_request(
    token: object,
    keys: Mapping[str, VerificationKey],
    *,
    site_id: str,
    clock: Clock,
    replay_cache: ReplayCache,
    door: str | None = None,
    require_door: bool = True,
    leeway: float = DEFAULT_LEEWAY,
) -> VerifiedBackendRequest | TokenRejection:
    """An app-backend JWT: ``iss`` bound to the key, ``aud`` = site, life <= 60 s.

    The key is found by the header's ``kid``, else by ``iss`` (interfaces.md).

    ``door``, when given, must equal the ``door`` claim (the URL's door).
    Admin calls that are not about one door pass ``require_door=False``.
    """
    try:
        policy = _backend_policy(site_id, door, require_door, float(leeway))
        resolve = by_kid_or_issuer(keys)

        def header_key(
            _head: bytes, header: dict[str, Any], unverified: dict[str, Any]
        ) -> VerificationKey | TokenRejection:
            return _header_key(header, unverified, policy, resolve)

        checked = _check(token, header_key, policy, _epoch_seconds(clock), replay_cache)
        if isinstance(checked, TokenRejection):
            return checked
        _header, claims, _key, jti, iat, exp = checked
        return VerifiedBackendRequest(
            issuer=claims["iss"], user=claims["sub"], door=claims.get("door"),
            role=claims.get("role"), jti=jti,
            issued_at=datetime.fromtimestamp(iat, UTC),
            expires_at=datetime.fromtimestamp(exp, UTC), claims=claims,
        )
    except Exception as exc:  # noqa: BLE001 - any surprise is a refusal, never a grant
        return _invalid(f"malformed token ({type(exc).__name__})")


# Backend-request policies by (site, door, require_door, leeway): the same few
# on every request, so made once. Bounded; a flood of doors only empties it.
_BACKEND_POLICIES: dict[tuple[str, str | None, bool, float], _Policy] = {}
_BACKEND_POLICIES_MAX = 1024


def _backend_policy(site_id: str, door: str | None, require_door: bool, leeway: float) -> _Policy:
    key = (site_id, door, require_door, leeway)
    policy = _BACKEND_POLICIES.get(key)
    if policy is not None:
        return policy

    def problem(claims: dict[str, Any]) -> str | None:
        claimed_door = claims.get("door")
        if claimed_door is not None and not isinstance(claimed_door, str):
            return "claim door must be a string"
        if door is not None and claimed_door != door:
            return "token is for another door"
        role = claims.get("role")
        if role is not None and not isinstance(role, str):
            return "claim role must be a string"
        return None

    def claims_pass(claims: dict[str, Any], issuer: str | None, audience: str | None) -> bool:
        """``_claims_problem`` with ``problem`` would find nothing (see _factor_claims_pass).

        Only the common case: anything unusual is False, and the careful
        checks then give the exact reason.
        """
        get = claims.get
        iss, sub, jti, aud = get("iss"), get("sub"), get("jti"), get("aud")
        claimed_door, role = get("door"), get("role")
        iat: Any = get("iat")
        exp: Any = get("exp")
        return (
            type(iss) is str and 0 < len(iss) <= 256 and (issuer is None or iss == issuer)
            and type(sub) is str and 0 < len(sub) <= 256
            and (type(claimed_door) is str and 0 < len(claimed_door) <= 256 if require_door
                 else claimed_door is None or type(claimed_door) is str)
            and (door is None or claimed_door == door)
            and (role is None or type(role) is str)
            and type(jti) is str and MIN_JTI_CHARS <= len(jti) <= MAX_JTI_CHARS
            and type(iat) in _NUMBER_TYPES and type(exp) in _NUMBER_TYPES
            and exp > iat and exp - iat <= BACKEND_MAX_LIFETIME
            and audience is not None and type(aud) is str and aud == audience
            and get("nbf") is None
        )

    policy = _Policy.make(
        audience=site_id, typ=(None, "JWT"),
        string_claims=("iss", "sub", "door") if require_door else ("iss", "sub"),
        max_lifetime=BACKEND_MAX_LIFETIME, leeway=leeway, replay_scope="iss",
        check_claims=problem, claims_pass=claims_pass,
    )
    if len(_BACKEND_POLICIES) >= _BACKEND_POLICIES_MAX:
        _BACKEND_POLICIES.clear()
    _BACKEND_POLICIES[key] = policy
    return policy
