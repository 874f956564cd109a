"""Trust lists: which public keys a verifier accepts, for which issuer and scope.

Every key is pinned to one algorithm from configuration; the token header
never chooses it. Keys are checked against their algorithm once, when the
trust list is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from passbridge.core.model import TrustedKey
from passbridge.core.tokens.keys import BadKey, PublicKey, check_alg, fits, load_public_key_pem


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key with its algorithm pinned, and the issuer it speaks for.

    ``issuer`` set: a token verified with this key must carry exactly that
    ``iss`` (a bridge cannot sign as another bridge). ``None``: any string.
    ``doors``/``factors``: what a factor token signed with this key may speak
    for (a bridge's trust entry); None = not limited.
    """

    kid: str
    alg: str
    key: PublicKey = field(repr=False)
    issuer: str | None = None
    doors: frozenset[str] | None = None
    factors: frozenset[str] | None = None

    @classmethod
    def from_pem(cls, kid: str, alg: str, pem: str, issuer: str | None = None) -> VerificationKey:
        return cls(kid, alg, load_public_key_pem(pem, alg), issuer)

    @classmethod
    def from_trusted(cls, trusted: TrustedKey) -> VerificationKey:
        """A site-file trust entry: its id is both the ``kid`` and the issuer,
        and its scope (doors, factors) comes along."""
        return cls(
            trusted.id, trusted.alg, load_public_key_pem(trusted.public_key_pem, trusted.alg),
            trusted.id, trusted.doors, frozenset(f.value for f in trusted.factors),
        )


def verification_keys(
    keys: Mapping[str, VerificationKey | TrustedKey] | Collection[TrustedKey],
) -> dict[str, VerificationKey]:
    """Normalise a trust list (site-file TrustedKeys or VerificationKeys) by kid."""
    items: list[tuple[str, VerificationKey | TrustedKey]]
    if isinstance(keys, Mapping):
        items = list(keys.items())
    else:
        items = [(k.id, k) for k in keys]
    out: dict[str, VerificationKey] = {}
    for kid, entry in items:
        vk = VerificationKey.from_trusted(entry) if isinstance(entry, TrustedKey) else entry
        check_alg(vk.alg)
        if not fits(vk.key, vk.alg):
            raise BadKey(f"key {kid!r} does not match its algorithm {vk.alg}")
        out[kid] = VerificationKey(kid, vk.alg, vk.key, vk.issuer, vk.doors, vk.factors)
    return out


# (unverified header, the token) -> the key that must have signed it, or None.
KeyResolver = Callable[[Mapping[str, Any], str], "VerificationKey | None"]


def by_kid(keys: Mapping[str, VerificationKey]) -> KeyResolver:
    """Resolve the key from the header's ``kid`` in a fixed trust list."""

    def resolve(header: Mapping[str, Any], _token: str) -> VerificationKey | None:
        kid = header.get("kid")
        return keys.get(kid) if isinstance(kid, str) else None

    return resolve


def by_kid_or_issuer(keys: Mapping[str, VerificationKey]) -> KeyResolver:
    """The key by the header's ``kid``; without one, the key bound to the
    (unverified) ``iss`` claim.

    interfaces.md makes a backend's ``kid`` optional. Picking the key by an
    unverified claim is safe: the signature must then verify with that very
    key, and PyJWT checks that the verified ``iss`` is the key's issuer.
    """
    kid_resolve = by_kid(keys)

    def resolve(header: Mapping[str, Any], token: str) -> VerificationKey | None:
        if "kid" in header:
            return kid_resolve(header, token)
        iss = unverified_claims(token).get("iss")
        if not isinstance(iss, str):
            return None
        return next((key for key in keys.values() if key.issuer == iss), None)

    return resolve


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims as PyJWT reads them without a key ({} if it cannot): only
    to pick the key, never to decide on."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return {}
    return claims if isinstance(claims, dict) else {}
