"""Backend-signed requests: remote unlock and admin calls from the app backend."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from passbridge.clock import Clock
from passbridge.core.policy import BACKEND_MAX_LIFETIME, DEFAULT_LEEWAY
from passbridge.core.tokens.jws import TokenRejection, verify_jws
from passbridge.core.tokens.policy import ReplayCache, TokenPolicy, policy
from passbridge.core.tokens.trust import VerificationKey, by_kid_or_issuer


@dataclass(frozen=True, slots=True)
class VerifiedBackendRequest:
    """A backend's request whose signature, claims and times checked out, ``jti`` spent.

    A remote unlock hands this to the core as it is: the backend's signed
    request is the statement the core decides on (interfaces.md).
    """

    issuer: str
    user: str
    door: str | None
    role: str | None
    jti: str
    claims: dict[str, Any]

    @property
    def ok(self) -> bool:
        return True

    @property
    def issued_at(self) -> datetime:
        return datetime.fromtimestamp(self.claims["iat"], UTC)

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.claims["exp"], UTC)


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
    checked = verify_jws(token, by_kid_or_issuer(keys),
                         backend_policy(site_id, door, require_door, leeway),
                         clock=clock, replay_cache=replay_cache)
    if isinstance(checked, TokenRejection):
        return checked
    claims = checked.claims
    return VerifiedBackendRequest(
        issuer=claims["iss"], user=claims["sub"], door=claims.get("door"),
        role=claims.get("role"), jti=claims["jti"], claims=claims,
    )


def backend_policy(site_id: str, door: str | None, require_door: bool,
                   leeway: float = DEFAULT_LEEWAY) -> TokenPolicy:
    """A backend request: no ``typ`` or ``JWT``, for this site, life <= 60 s."""

    def problem(claims: dict[str, Any], _key: VerificationKey) -> str | None:
        claimed_door = claims.get("door")
        if claimed_door is not None and not isinstance(claimed_door, str):
            return "claim door must be a string"
        if door is not None and claimed_door != door:
            return "token is for another door"
        role = claims.get("role")
        if role is not None and not isinstance(role, str):
            return "claim role must be a string"
        return None

    return policy(
        audience=site_id, typ=(None, "JWT"),
        string_claims=("iss", "sub", "door") if require_door else ("iss", "sub"),
        max_lifetime=BACKEND_MAX_LIFETIME, leeway=leeway, check_claims=problem,
    )
