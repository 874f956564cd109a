"""Phone-signed nearby requests, checked against the phone's enrolled key.

The request says who (``cred``, and the header ``kid`` that must name the
same credential), which door and which rotating id (``adv``) the phone
advertises. It never decides the side: the bridge takes the side from the
radio that heard the phone (bridge.proximity); an optional ``side`` claim
is kept only so that a claim the radio contradicts is no evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from passbridge.clock import Clock
from passbridge.core.model import Reason, Side
from passbridge.core.policy import DEFAULT_LEEWAY, NEARBY_MAX_LIFETIME
from passbridge.core.tokens.jws import TokenRejection, verify_jws
from passbridge.core.tokens.keys import p256_public_key_from_point
from passbridge.core.tokens.policy import ReplayCache, policy
from passbridge.core.tokens.trust import VerificationKey, unverified_claims


@dataclass(frozen=True, slots=True)
class VerifiedNearbyRequest:
    credential: str
    door: str
    adv: str
    jti: str
    issued_at: datetime
    expires_at: datetime
    # The optional ``side`` claim; never the decision's side (see module doc).
    claimed_side: Side | None = None

    @property
    def ok(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class RefusedNearbyRequest:
    """Signed by the enrolled key of ``credential``, yet not acceptable as it
    stands (header ``kid`` naming another credential). Attributable, so the
    caller records it as a denial (``token_invalid``) rather than a bare 401;
    its ``jti`` is spent, so a resend is ``token_replayed``."""

    credential: str
    door: str
    rejection: TokenRejection

    @property
    def ok(self) -> bool:
        return False


def verify_nearby_request(
    token: object,
    phone_key: Callable[[str], bytes | None],
    *,
    clock: Clock,
    replay_cache: ReplayCache,
    door: str | None = None,
    leeway: float = DEFAULT_LEEWAY,
) -> VerifiedNearbyRequest | RefusedNearbyRequest | TokenRejection:
    """A phone's nearby-unlock JWS, signed (ES256) by its enrolled credential key.

    ``phone_key(credential_id)`` returns the enrolled 65-byte P-256 point, or
    None for an unknown or revoked phone (then ``token_invalid``: the caller
    never learns more from an unverified claim). The key is picked by the
    ``cred`` claim; the header ``kid`` must then be that same credential id,
    or the verified request comes back as a ``RefusedNearbyRequest``.
    """

    def resolve(_header: Mapping[str, Any], token: str) -> VerificationKey | None:
        cred = unverified_claims(token).get("cred")
        if not isinstance(cred, str) or not cred:
            return None
        point = phone_key(cred)
        if point is None:
            return None
        return VerificationKey(cred, "ES256", p256_public_key_from_point(point))

    def problem(claims: dict[str, Any], _key: VerificationKey) -> str | None:
        if door is not None and claims["door"] != door:
            return "request is for another door"
        if claims.get("side", "in") not in ("in", "out"):
            return "side must be 'in' or 'out'"
        return None

    nearby = policy(
        audience=None, typ=None, string_claims=("cred", "door", "adv"),
        max_lifetime=NEARBY_MAX_LIFETIME, leeway=leeway, replay_scope="cred",
        check_claims=problem,
    )
    checked = verify_jws(token, resolve, nearby, clock=clock, replay_cache=replay_cache)
    if isinstance(checked, TokenRejection):
        return checked
    claims = checked.claims
    kid = checked.header.get("kid")
    if kid != claims["cred"]:
        detail = ("header kid is missing" if kid is None
                  else "header kid names another credential than cred")
        return RefusedNearbyRequest(
            claims["cred"], claims["door"], TokenRejection(Reason.TOKEN_INVALID, detail))
    side = claims.get("side")
    return VerifiedNearbyRequest(
        claimed_side=None if side is None else Side(side),
        credential=claims["cred"], door=claims["door"], adv=claims["adv"], jti=checked.jti,
        issued_at=checked.issued_at, expires_at=checked.expires_at,
    )
