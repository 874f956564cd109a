"""Careful verification of one compact JWS, the steps every kind of token shares.

The audience, required-claim and ``sub``/``jti`` type checks that
``jwt.decode`` would run are made here with the same rules; everything about
time is checked against the injected clock, because PyJWT can only read the
real wall clock and scenarios run in other years.

Order of checks, on purpose: size and shape, key lookup, signature,
claim types, times, and only then the single-use ``jti`` record, so a forged
or stale token can never burn a legitimate token's ``jti``. No claim is
trusted before the signature checks out except what picks the key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from passbridge.clock import Clock, SystemClock
from passbridge.core.model import Reason
from passbridge.core.tokens.compact import _header, _json, _NotCanonical, _unb64
from passbridge.core.tokens.keys import SUPPORTED_ALGS
from passbridge.core.tokens.limits import (
    DEFAULT_LEEWAY,
    MAX_JTI_CHARS,
    MAX_TOKEN_BYTES,
    MIN_JTI_CHARS,
)
from passbridge.core.tokens.replay import _FRESH, _USED, ReplayCache
from passbridge.core.tokens.trust import KeyResolver, VerificationKey


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


class UnverifiedToken(Exception):
    """A token no trusted key signed, where the caller asked not to decide on it.

    Nothing is attributable to it (anyone can send bytes), so it becomes no
    decision and no audit record: the HTTP edge answers 401 and counts it.
    """

    def __init__(self, rejection: TokenRejection) -> None:
        super().__init__(rejection.detail)
        self.rejection = rejection


@dataclass(frozen=True, slots=True)
class VerifiedJws:
    """A token whose signature, shape and times all checked out."""

    header: dict[str, Any]
    claims: dict[str, Any]
    key: VerificationKey
    issued_at: datetime
    expires_at: datetime
    jti: str

    @property
    def ok(self) -> bool:
        return True


def _invalid(detail: str) -> TokenRejection:
    return TokenRejection(Reason.TOKEN_INVALID, detail)


def _signed_but(rejection: TokenRejection) -> TokenRejection:
    """The same refusal, of a token whose signature did verify."""
    return TokenRejection(rejection.reason, rejection.detail, verified=True)


_NUMBER_TYPES = (int, float)


@dataclass(frozen=True, slots=True)
class _Policy:
    """What one kind of token must satisfy; made once per verifier, not per token."""

    audience: str | None
    typ: tuple[str | None, ...] | None
    string_claims: tuple[str, ...]
    required: tuple[str, ...]
    max_lifetime: float
    leeway: float
    replay_scope: str
    check_claims: Callable[[dict[str, Any]], str | None] | None
    # Optional shortcut, given the claims, the key's issuer and the audience:
    # True only when every check of _claims_problem would pass (so they may
    # be skipped); False means "look closely".
    claims_pass: Callable[[dict[str, Any], str | None, str | None], bool] | None = None
    # Optional check of the (well-formed) claims against what the signing
    # key may speak for; a detail string refuses the token as invalid.
    check_key: Callable[[dict[str, Any], VerificationKey], str | None] | None = None

    @classmethod
    def make(
        cls,
        *,
        audience: str | None,
        typ: Collection[str | None] | None,
        string_claims: Collection[str],
        max_lifetime: float,
        leeway: float,
        replay_scope: str,
        check_claims: Callable[[dict[str, Any]], str | None] | None,
        claims_pass: Callable[[dict[str, Any], str | None, str | None], bool] | None = None,
        check_key: Callable[[dict[str, Any], VerificationKey], str | None] | None = None,
    ) -> _Policy:
        strings = tuple(string_claims)
        required = ("iat", "exp", "jti", *strings, *(("aud",) if audience is not None else ()))
        return cls(
            audience, None if typ is None else tuple(typ), strings, required,
            float(max_lifetime), float(leeway), replay_scope, check_claims, claims_pass,
            check_key,
        )


# header, claims, key, jti, iat, exp (epoch seconds, as the token gives them)
_Checked = tuple[dict[str, Any], dict[str, Any], VerificationKey, str, float, float]
# The key a token's header (and, for some resolvers, its unverified claims)
# picks, or why none: (header segment, header, unverified claims) -> verdict.
HeaderVerdict = Callable[
    [bytes, dict[str, Any], dict[str, Any]], "VerificationKey | TokenRejection"
]


def verify_jws(
    token: object,
    resolve_key: KeyResolver,
    *,
    clock: Clock,
    replay_cache: ReplayCache,
    audience: str | None,
    typ: Collection[str | None] | None,
    string_claims: Collection[str],
    max_lifetime: float,
    leeway: float = DEFAULT_LEEWAY,
    replay_scope: str = "iss",
    check_claims: Callable[[dict[str, Any]], str | None] | None = None,
) -> VerifiedJws | TokenRejection:
    """Verify one compact JWS the careful way; never raises.

    ``resolve_key`` picks the key from the (unverified) header and claims,
    for example by ``kid`` or by a phone's credential id; the algorithm is
    always the key's pinned one. ``typ`` lists the accepted header ``typ``
    values (``None`` = absent); ``typ=None`` skips the check. ``string_claims``
    must be present as non-empty strings; ``iat``, ``exp`` and ``jti`` are
    always required. ``replay_scope`` names the claim that scopes the ``jti``
    (``iss`` or ``cred``) so that two issuers never collide. ``check_claims``
    returns a detail string for a claim set the caller cannot use; it runs
    before the ``jti`` is recorded.
    """
    try:
        policy = _Policy.make(
            audience=audience, typ=typ, string_claims=string_claims,
            max_lifetime=max_lifetime, leeway=leeway, replay_scope=replay_scope,
            check_claims=check_claims,
        )

        def header_key(
            _head: bytes, header: dict[str, Any], unverified: dict[str, Any]
        ) -> VerificationKey | TokenRejection:
            return _header_key(header, unverified, policy, resolve_key)

        checked = _check(token, header_key, policy, _epoch_seconds(clock), replay_cache)
        if isinstance(checked, TokenRejection):
            return checked
        header, claims, key, jti, iat, exp = checked
        return VerifiedJws(
            header=dict(header), claims=claims, key=key,
            issued_at=datetime.fromtimestamp(iat, UTC),
            expires_at=datetime.fromtimestamp(exp, UTC), jti=jti,
        )
    except Exception as exc:  # noqa: BLE001 - any surprise is a refusal, never a grant
        return _invalid(f"malformed token ({type(exc).__name__})")


def _header_key(
    header: dict[str, Any], unverified: dict[str, Any], p: _Policy, resolve_key: KeyResolver
) -> VerificationKey | TokenRejection:
    """The header checks, in order, then the key; nothing here is trusted yet."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in SUPPORTED_ALGS:
        return _invalid(f"algorithm not accepted: {str(alg)[:20]!r}")
    if p.typ is not None and header.get("typ") not in p.typ:
        return _invalid("wrong token type")
    if "crit" in header or header.get("b64", True) is not True:
        return _invalid("unsupported header parameters")
    if "kid" in header and not isinstance(header["kid"], str):
        return _invalid("unknown key (kid is not a string)")
    key = resolve_key(header, unverified)
    if key is None:
        return _invalid("unknown key")
    if alg != key.alg:
        return _invalid("algorithm does not match the key's pinned algorithm")
    if key._signature is None:  # noqa: SLF001 - this package's own key object
        return _invalid("key does not fit its pinned algorithm")
    return key


def _claims_problem(
    claims: dict[str, Any], key: VerificationKey, p: _Policy
) -> TokenRejection | None:
    """The claim checks jwt.decode would make (presence, audience, sub type),
    then our own, in order; a claim that is null counts as missing, as in PyJWT."""
    get = claims.get
    for name in p.required:
        if get(name) is None:
            return _invalid(f"missing claim {name}")
    audience = p.audience
    if audience is not None:
        aud = claims["aud"]
        if type(aud) is str:
            if aud != audience:
                return _invalid("wrong audience")
        elif not aud:
            return _invalid("missing claim aud")
        elif type(aud) is not list or not all(type(a) is str for a in aud):
            return _invalid("wrong audience (not a string or list of strings)")
        elif audience not in aud:
            return _invalid("wrong audience")
    sub = get("sub")
    if sub is not None and type(sub) is not str:
        return _invalid("claim sub must be a string")
    for name in p.string_claims:
        value = claims[name]
        if type(value) is not str or not value or len(value) > 256:
            return _invalid(f"claim {name} must be a non-empty string")
    if key.issuer is not None and get("iss") != key.issuer:
        return _invalid("issuer does not match the signing key")
    jti = claims["jti"]
    if type(jti) is not str or not MIN_JTI_CHARS <= len(jti) <= MAX_JTI_CHARS:
        return _invalid("jti must be a string of 22-128 characters")
    # JSON gives int, float or bool; bool is not a time.
    iat, exp = claims["iat"], claims["exp"]
    if type(iat) not in _NUMBER_TYPES or type(exp) not in _NUMBER_TYPES:
        return _invalid("iat and exp must be numbers")
    if not (exp > iat):
        return _invalid("exp must be after iat")
    if exp - iat > p.max_lifetime:
        return _invalid(f"lifetime over {p.max_lifetime:g} s")
    nbf = get("nbf")
    if nbf is not None and type(nbf) not in _NUMBER_TYPES:
        return _invalid("nbf must be a number")
    if p.check_claims is not None:
        problem = p.check_claims(claims)
        if problem is not None:
            return _invalid(problem)
    return None


def _epoch_seconds(clock: Clock) -> Callable[[], float]:
    """The injected clock's ``now()`` as epoch seconds.

    The system clock's is ``time.time()`` (the reading ``datetime.now``
    makes too), without building a datetime to take it apart again.
    """
    if type(clock) is SystemClock:
        return time.time

    def read() -> float:
        return clock.now().timestamp()

    return read


# (key, the exact token bytes) -> whether the signature step may be skipped.
Vouch = Callable[[VerificationKey, bytes], bool]


def _check(
    token: object,
    header_key: HeaderVerdict,
    p: _Policy,
    now_seconds: Callable[[], float],
    replay_cache: ReplayCache,
    vouched: Vouch | None = None,
) -> _Checked | TokenRejection:
    # --- size and shape
    if type(token) is not str:
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
    data = token.encode("ascii")
    parts = data.split(b".")
    if len(parts) != 3 or b"" in parts:
        return _invalid("not a compact JWS")
    head, body, sig = parts
    try:
        header = _header(head)
        unverified = _json(_unb64(body))
        signature = _unb64(sig)
    except _NotCanonical:
        return _invalid("a segment is not canonical base64url")
    except (ValueError, RecursionError):
        return _invalid("undecodable header or payload")
    if type(header) is not dict or type(unverified) is not dict:
        return _invalid("header and payload must be JSON objects")

    # --- header and key (kid, typ, alg pinned per key)
    key = header_key(head, header, unverified)
    if isinstance(key, TokenRejection):
        return key
    check_signature = key._signature  # noqa: SLF001 - this package's own key object
    assert check_signature is not None  # header_key refuses keys without one

    # --- signature, for the key's pinned algorithm (unless these exact bytes
    # were minted by this process's own bridge with that very key)
    if (vouched is None or not vouched(key, data)) and not check_signature(
        data[: len(head) + 1 + len(body)], signature
    ):
        return _invalid("bad signature")
    claims: dict[str, Any] = unverified
    get = claims.get
    if p.claims_pass is None or not p.claims_pass(claims, key.issuer, p.audience):
        problem = _claims_problem(claims, key, p)
        if problem is not None:
            return _signed_but(problem)
    if p.check_key is not None:
        out_of_scope = p.check_key(claims, key)
        if out_of_scope is not None:
            return _signed_but(_invalid(out_of_scope))
    jti, iat, exp, nbf = claims["jti"], claims["iat"], claims["exp"], get("nbf")

    # --- times, against the injected clock
    now = now_seconds()
    leeway = p.leeway
    if iat > now + leeway:
        return _signed_but(_invalid("issued in the future"))
    if nbf is not None and nbf > now + leeway:
        return _signed_but(_invalid("not yet valid"))
    if now > exp + leeway:
        return _EXPIRED

    # --- single use, last: nothing above can burn a genuine token's jti
    scope = get(p.replay_scope)
    scope_text = scope if type(scope) is str else ""
    verdict = replay_cache.check_and_add(f"{scope_text}\x00{jti}", float(exp), now)
    if verdict is _FRESH:
        return header, claims, key, jti, iat, exp
    if verdict is _USED:
        return _REPLAYED
    return _signed_but(_invalid("replay cache full"))


_EXPIRED = TokenRejection(Reason.TOKEN_EXPIRED, "token expired", verified=True)
_REPLAYED = TokenRejection(Reason.TOKEN_REPLAYED, "token already used", verified=True)
