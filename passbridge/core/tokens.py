"""Signed tokens: how a mobile factor (and a remote or nearby request) earns the core's trust.

This lives in the core because the core accepts mobile factors only as
tokens; it does no I/O. The signature is checked by PyJWT's own algorithm
object for the key's pinned algorithm (``ES256`` or ``EdDSA``), with the key
prepared once when the trust list is loaded. The compact serialisation is
parsed here, once, with PyJWT's strictness (URL-safe alphabet only,
canonical base64, padding only where PyJWT allows it), because
``jwt.decode`` would parse it a second time character by character and that
costs more than the signature check itself on a busy door. The audience,
required-claim and ``sub``/``jti`` type checks that ``jwt.decode`` would run
are made here with the same rules; everything about time is checked against
the injected clock, because PyJWT can only read the real wall clock and
scenarios run in other years.

Every verifier returns a value and never raises, whatever the input: a
rejection carries one of the three token reasons of rules.md section 4
(``token_invalid``, ``token_expired``, ``token_replayed``) and an operator
detail that never contains key material.

Order of checks, on purpose: size and shape, key lookup, signature (PyJWT),
claim types, times, and only then the single-use ``jti`` record, so a forged
or stale token can never burn a legitimate token's ``jti``. No claim is
trusted before the signature checks out except what picks the key.
"""

from __future__ import annotations

import binascii
import heapq
import json
import secrets
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import Algorithm

from passbridge.clock import Clock
from passbridge.core.model import Factor, Reason, Side, TrustedKey

FACTOR_TOKEN_TYP = "pb-factor+jwt"  # noqa: S105 - a media type, not a secret
MAX_TOKEN_BYTES = 4096
FACTOR_MAX_LIFETIME = 30.0
BACKEND_MAX_LIFETIME = 60.0
NEARBY_MAX_LIFETIME = 60.0
DEFAULT_LEEWAY = 5.0
# 128 random bits in URL-safe base64 is 22 characters; anything shorter cannot hold them.
MIN_JTI_CHARS = 22
MAX_JTI_CHARS = 128

SUPPORTED_ALGS: frozenset[str] = frozenset({"ES256", "EdDSA"})
# Factors a bridge may sign; a PIN never travels as a token.
TOKEN_FACTORS: frozenset[Factor] = frozenset(
    {Factor.NFC, Factor.BLE, Factor.NEARBY, Factor.REMOTE, Factor.CARD}
)

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class BadKey(ValueError):
    """A key that does not fit its pinned algorithm (wrong type or curve, bad PEM)."""


# ---------------------------------------------------------------------------
# Key helpers


def generate_private_key(alg: str = "ES256") -> PrivateKey:
    """A fresh key pair for ``alg``: P-256 for ES256, Ed25519 for EdDSA."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise BadKey(f"unsupported algorithm {alg!r} (expected ES256 or EdDSA)")


def private_key_to_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_key_to_pem(key: PublicKey | PrivateKey) -> str:
    public = key.public_key() if isinstance(key, (ec.EllipticCurvePrivateKey,
                                                  ed25519.Ed25519PrivateKey)) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _check_alg(alg: str) -> None:
    if alg not in SUPPORTED_ALGS:
        raise BadKey(f"unsupported algorithm {alg!r} (expected ES256 or EdDSA)")


def _fits(key: object, alg: str) -> bool:
    if alg == "ES256":
        return isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)) and (
            isinstance(key.curve, ec.SECP256R1)
        )
    return isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey))


def _prepare(alg: str, key: object) -> tuple[Algorithm, Any] | None:
    """PyJWT's verifier for ``alg`` and ``key`` prepared for it, if they belong together."""
    if alg not in SUPPORTED_ALGS or not _fits(key, alg):
        return None
    algorithm = jwt.get_algorithm_by_name(alg)
    try:
        prepared = algorithm.prepare_key(key)
    except (jwt.InvalidKeyError, TypeError, ValueError):
        return None
    if algorithm.check_key_length(prepared):
        return None
    return algorithm, prepared


def load_private_key_pem(pem: str | bytes, alg: str) -> PrivateKey:
    """Load an unencrypted PKCS#8 private key and check it is the type ``alg`` needs."""
    _check_alg(alg)
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BadKey("not a readable unencrypted PEM private key") from exc
    if not _fits(key, alg):
        raise BadKey(f"private key type does not match algorithm {alg}")
    assert isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey))
    return key


def load_public_key_pem(pem: str | bytes, alg: str) -> PublicKey:
    """Load a SubjectPublicKeyInfo PEM and check it is the type ``alg`` needs.

    This check is what makes a pinned ``ES256`` key useless as an HMAC secret
    or under another algorithm.
    """
    _check_alg(alg)
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise BadKey("not a readable PEM public key") from exc
    if not _fits(key, alg):
        raise BadKey(f"public key type does not match algorithm {alg}")
    assert isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey))
    return key


def p256_public_key_from_point(point: bytes) -> ec.EllipticCurvePublicKey:
    """A phone's public key from its 65-byte uncompressed SEC1 point."""
    if len(point) != 65 or point[0] != 0x04:
        raise BadKey("expected a 65-byte uncompressed P-256 point")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError as exc:
        raise BadKey("not a point on P-256") from exc


def p256_point(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bytes:
    """The 65-byte uncompressed SEC1 point of a P-256 key."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key with its algorithm pinned, and the issuer it speaks for.

    ``issuer`` set: a token verified with this key must carry exactly that
    ``iss`` (a bridge cannot sign as another bridge). ``None``: any string.
    """

    kid: str
    alg: str
    key: PublicKey = field(repr=False)
    issuer: str | None = None
    # PyJWT's algorithm object and the key it has prepared (curve checked),
    # made once here rather than on every token; None for a key that does
    # not fit its algorithm, which then verifies nothing.
    _jws: tuple[Algorithm, Any] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_jws", _prepare(self.alg, self.key))

    @classmethod
    def from_pem(cls, kid: str, alg: str, pem: str, issuer: str | None = None) -> VerificationKey:
        return cls(kid, alg, load_public_key_pem(pem, alg), issuer)

    @classmethod
    def from_trusted(cls, trusted: TrustedKey) -> VerificationKey:
        """A site-file trust entry: its id is both the ``kid`` and the issuer."""
        return cls.from_pem(trusted.id, trusted.alg, trusted.public_key_pem, trusted.id)


def verification_keys(
    keys: Mapping[str, VerificationKey | TrustedKey] | Collection[TrustedKey],
) -> dict[str, VerificationKey]:
    """Normalise a trust list (site-file TrustedKeys or VerificationKeys) by kid."""
    out: dict[str, VerificationKey] = {}
    items: list[tuple[str, VerificationKey | TrustedKey]]
    if isinstance(keys, Mapping):
        items = list(keys.items())
    else:
        items = [(k.id, k) for k in keys]
    for kid, entry in items:
        vk = VerificationKey.from_trusted(entry) if isinstance(entry, TrustedKey) else entry
        _check_alg(vk.alg)
        if not _fits(vk.key, vk.alg):
            raise BadKey(f"key {kid!r} does not match its algorithm {vk.alg}")
        out[kid] = VerificationKey(kid, vk.alg, vk.key, vk.issuer)
    return out


# ---------------------------------------------------------------------------
# Replay cache


class ReplayVerdict(Enum):
    FRESH = "fresh"
    REPLAYED = "replayed"
    FULL = "full"


class ReplayCache:
    """Single-use record of token ids, kept until each one's expiry plus leeway.

    Pruning is lazy and amortised: a heap ordered by expiry releases entries
    from the front as time passes. When full of unexpired entries it refuses
    new tokens rather than forgetting one still in its lifetime, which would
    let that token be replayed. Thread-safe: NFC and BLE adapters verify from
    their own threads.
    """

    def __init__(self, max_entries: int = 1_000_000, *, leeway: float = DEFAULT_LEEWAY) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.leeway = leeway
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def _prune(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] + self.leeway < now:
            _, key = heapq.heappop(heap)
            self._expiry.pop(key, None)

    def check_and_add(self, key: str, expires_at: float, now: float) -> ReplayVerdict:
        """Record ``key`` as used until ``expires_at`` (epoch seconds), atomically."""
        with self._lock:
            self._prune(now)
            if key in self._expiry:
                return ReplayVerdict.REPLAYED
            if len(self._expiry) >= self.max_entries:
                return ReplayVerdict.FULL
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return ReplayVerdict.FRESH


# ---------------------------------------------------------------------------
# Generic careful JWS verification


@dataclass(frozen=True, slots=True)
class TokenRejection:
    """Why a token was refused: a rules.md reason and a detail for operators."""

    reason: Reason
    detail: str

    @property
    def ok(self) -> bool:
        return False


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


# base64url to standard base64 for binascii's strict decoder; "+" and "/" are
# not base64url, so they become "!", which the strict decoder refuses.
_TO_STANDARD_B64 = bytes.maketrans(b"-_+/", b"+/!!")
# Bits of a segment's last character that carry no data, by its length mod 4.
# They must be zero: otherwise two spellings decode to the same bytes (PyJWT
# refuses those too, by re-encoding).
_SPARE_BITS = (0, 0, 0b1111, 0b11)
_B64URL_VALUE = [0] * 256
for _i, _c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"):
    _B64URL_VALUE[_c] = _i
# Parsed headers by their exact segment: one bridge signs every token with the
# same header, so after the first token it costs a dict lookup. Bounded; a
# flood of distinct headers only empties it.
_HEADER_CACHE: dict[bytes, dict[str, Any]] = {}
_HEADER_CACHE_MAX = 256
_JSON = json.JSONDecoder()


class _NotCanonical(ValueError):
    """A segment that PyJWT's strict base64url decoding would refuse."""


def _unb64(segment: bytes) -> bytes:
    """Decode one base64url segment exactly as strictly as PyJWT does.

    Only the URL-safe alphabet; "=" padding only to complete the last quad
    (at most two); no length that leaves a lone character; unused bits zero.
    """
    body = segment.rstrip(b"=")
    padding = len(segment) - len(body)
    rem = len(body) % 4
    if rem == 1 or padding > 2 or (padding and len(segment) % 4):
        raise _NotCanonical
    if body and _B64URL_VALUE[body[-1]] & _SPARE_BITS[rem]:
        raise _NotCanonical
    try:
        return binascii.a2b_base64(
            body.translate(_TO_STANDARD_B64) + b"=" * (-rem % 4), strict_mode=True
        )
    except binascii.Error as exc:
        raise _NotCanonical from exc


def _json(data: bytes) -> Any:
    """``json.loads`` of a segment, by the quicker route when the text is plain UTF-8."""
    try:
        text = data.decode("utf-8")
        value, end = _JSON.raw_decode(text)
        if end == len(text):
            return value
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
        pass
    # Surrounding whitespace, a BOM, UTF-16/32, or not JSON at all: the
    # standard route decides (and raises for the last).
    return json.loads(data)


def _header(segment: bytes) -> Any:
    header = _HEADER_CACHE.get(segment)
    if header is not None:
        return header
    parsed = _json(_unb64(segment))
    if isinstance(parsed, dict):
        if len(_HEADER_CACHE) >= _HEADER_CACHE_MAX:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[segment] = parsed
    return parsed


_NUMBER_TYPES = (int, float)


KeyResolver = Callable[[dict[str, Any], dict[str, Any]], VerificationKey | None]


def by_kid(keys: Mapping[str, VerificationKey]) -> KeyResolver:
    """Resolve the key from the header's ``kid`` in a fixed trust list."""

    def resolve(header: dict[str, Any], _claims: dict[str, Any]) -> VerificationKey | None:
        kid = header.get("kid")
        return keys.get(kid) if isinstance(kid, str) else None

    return resolve


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
    ) -> _Policy:
        strings = tuple(string_claims)
        required = ("iat", "exp", "jti", *strings, *(("aud",) if audience is not None else ()))
        return cls(
            audience, None if typ is None else tuple(typ), strings, required,
            float(max_lifetime), float(leeway), replay_scope, check_claims,
        )


# header, claims, key, jti, issued at, expires at
_Checked = tuple[dict[str, Any], dict[str, Any], VerificationKey, str, datetime, datetime]


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
        checked = _check(token, resolve_key, policy, clock, replay_cache)
    except Exception as exc:  # noqa: BLE001 - any surprise is a refusal, never a grant
        return _invalid(f"malformed token ({type(exc).__name__})")
    if isinstance(checked, TokenRejection):
        return checked
    header, claims, key, jti, issued_at, expires_at = checked
    return VerifiedJws(
        header=dict(header), claims=claims, key=key, issued_at=issued_at,
        expires_at=expires_at, jti=jti,
    )


def _check(
    token: object,
    resolve_key: KeyResolver,
    p: _Policy,
    clock: Clock,
    replay_cache: ReplayCache,
) -> _Checked | TokenRejection:
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
    data = token.encode("ascii")
    parts = data.split(b".")
    if len(parts) != 3 or not all(parts):
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
    if not isinstance(header, dict) or not isinstance(unverified, dict):
        return _invalid("header and payload must be JSON objects")

    # --- header and key
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
    if key._jws is None:  # noqa: SLF001 - this module's own key object
        return _invalid("key does not fit its pinned algorithm")

    # --- signature, by PyJWT's algorithm object for the pinned algorithm
    algorithm, prepared = key._jws  # noqa: SLF001
    if not algorithm.verify(data[: len(head) + 1 + len(body)], prepared, signature):
        return _invalid("bad signature")
    claims: dict[str, Any] = unverified

    # --- the claim checks jwt.decode would make (presence, audience, sub type),
    # then our own; a claim that is null counts as missing, as in PyJWT
    for name in p.required:
        if claims.get(name) is None:
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
    sub = claims.get("sub")
    if sub is not None and type(sub) is not str:
        return _invalid("claim sub must be a string")
    for name in p.string_claims:
        value = claims[name]
        if type(value) is not str or not value or len(value) > 256:
            return _invalid(f"claim {name} must be a non-empty string")
    if key.issuer is not None and claims.get("iss") != key.issuer:
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
    nbf = claims.get("nbf")
    if nbf is not None and type(nbf) not in _NUMBER_TYPES:
        return _invalid("nbf must be a number")
    if p.check_claims is not None:
        problem = p.check_claims(claims)
        if problem is not None:
            return _invalid(problem)

    # --- times, against the injected clock
    now = clock.now().timestamp()
    leeway = p.leeway
    if iat > now + leeway:
        return _invalid("issued in the future")
    if nbf is not None and nbf > now + leeway:
        return _invalid("not yet valid")
    if now > exp + leeway:
        return TokenRejection(Reason.TOKEN_EXPIRED, "token expired")
    issued_at = datetime.fromtimestamp(iat, UTC)
    expires_at = datetime.fromtimestamp(exp, UTC)

    # --- single use, last: nothing above can burn a genuine token's jti
    scope = claims.get(p.replay_scope)
    scope_text = scope if isinstance(scope, str) else ""
    verdict = replay_cache.check_and_add(f"{scope_text}\x00{jti}", float(exp), now)
    if verdict is ReplayVerdict.REPLAYED:
        return TokenRejection(Reason.TOKEN_REPLAYED, "token already used")
    if verdict is ReplayVerdict.FULL:
        return _invalid("replay cache full")
    return header, claims, key, jti, issued_at, expires_at


# ---------------------------------------------------------------------------
# Factor tokens (bridge -> core)


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


class FactorTokenMinter:
    """The bridge side: signs one accepted factor into a short-lived token."""

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
    ) -> None:
        _check_alg(alg)
        if not _fits(private_key, alg):
            raise BadKey(f"private key type does not match algorithm {alg}")
        if not 0 < lifetime <= FACTOR_MAX_LIFETIME:
            raise ValueError(f"lifetime must be in (0, {FACTOR_MAX_LIFETIME:g}] seconds")
        self.bridge_id = bridge_id
        self.kid = kid if kid is not None else bridge_id
        self.alg = alg
        self.site_id = site_id
        self.lifetime = lifetime
        self._clock = clock
        self._key = private_key

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
        if Factor(factor) not in TOKEN_FACTORS:
            raise ValueError(f"factor {factor} is never sent as a token")
        iat = int(self._clock.now().timestamp())
        claims = {
            "iss": self.bridge_id,
            "aud": self.site_id,
            "sub": user,
            "door": door,
            "side": Side(side).value,
            "factor": Factor(factor).value,
            "cred": credential,
            "iat": iat,
            "exp": iat + (int(self.lifetime) if self.lifetime.is_integer() else self.lifetime),
            "jti": new_jti(),
            "ev": evidence or {},
        }
        headers = {"kid": self.kid, "typ": FACTOR_TOKEN_TYP}
        return jwt.encode(claims, self._key, algorithm=self.alg, headers=headers)


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
            check_claims=_factor_claims_problem,
        )

    def verify(self, token: object) -> VerifiedFactor | TokenRejection:
        """Never raises: every token either becomes a VerifiedFactor or is refused."""
        try:
            checked = _check(token, self._resolve, self._policy, self._clock, self.replay_cache)
            if isinstance(checked, TokenRejection):
                return checked
            _header, claims, _key, jti, issued_at, expires_at = checked
            return VerifiedFactor(
                user=claims["sub"],
                door=claims["door"],
                side=_SIDE_BY_VALUE[claims["side"]],
                factor=_FACTOR_BY_VALUE[claims["factor"]],
                credential=claims["cred"],
                evidence=claims["ev"],
                jti=jti,
                issuer=claims["iss"],
                issued_at=issued_at,
                expires_at=expires_at,
            )
        except Exception as exc:  # noqa: BLE001 - any surprise is a refusal, never a grant
            return _invalid(f"malformed token ({type(exc).__name__})")


_SIDE_BY_VALUE: dict[str, Side] = {s.value: s for s in Side}
_FACTOR_BY_VALUE: dict[str, Factor] = {f.value: f for f in TOKEN_FACTORS}
_SIDES = frozenset(_SIDE_BY_VALUE)
_TOKEN_FACTOR_VALUES = frozenset(_FACTOR_BY_VALUE)


def _factor_claims_problem(claims: dict[str, Any]) -> str | None:
    if claims["side"] not in _SIDES:
        return "unknown side"
    if claims["factor"] not in _TOKEN_FACTOR_VALUES:
        return "unknown factor"
    if not isinstance(claims.get("ev"), dict):
        return "ev must be an object"
    return None


# ---------------------------------------------------------------------------
# Backend-signed requests (remote unlock, admin calls) and phone-signed nearby requests


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

    ``door``, when given, must equal the ``door`` claim (the URL's door).
    Admin calls that are not about one door pass ``require_door=False``.
    """
    strings = ("iss", "sub", "door") if require_door else ("iss", "sub")

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

    checked = verify_jws(
        token, by_kid(keys), clock=clock, replay_cache=replay_cache, audience=site_id,
        typ=(None, "JWT"), string_claims=strings, max_lifetime=BACKEND_MAX_LIFETIME,
        leeway=leeway, check_claims=problem,
    )
    if isinstance(checked, TokenRejection):
        return checked
    claims = checked.claims
    return VerifiedBackendRequest(
        issuer=claims["iss"], user=claims["sub"], door=claims.get("door"),
        role=claims.get("role"),
        jti=checked.jti, issued_at=checked.issued_at, expires_at=checked.expires_at,
        claims=claims,
    )


@dataclass(frozen=True, slots=True)
class VerifiedNearbyRequest:
    credential: str
    door: str
    adv: str
    jti: str
    issued_at: datetime
    expires_at: datetime

    @property
    def ok(self) -> bool:
        return True


def verify_nearby_request(
    token: object,
    phone_key: Callable[[str], bytes | None],
    *,
    clock: Clock,
    replay_cache: ReplayCache,
    door: str | None = None,
    leeway: float = DEFAULT_LEEWAY,
) -> VerifiedNearbyRequest | TokenRejection:
    """A phone's nearby-unlock JWS, signed (ES256) by its enrolled credential key.

    ``phone_key(credential_id)`` returns the enrolled 65-byte P-256 point, or
    None for an unknown or revoked phone (then ``token_invalid``: the caller
    never learns more from an unverified claim).
    """

    def resolve(_header: dict[str, Any], claims: dict[str, Any]) -> VerificationKey | None:
        cred = claims.get("cred")
        if not isinstance(cred, str) or not cred:
            return None
        point = phone_key(cred)
        if point is None:
            return None
        return VerificationKey(cred, "ES256", p256_public_key_from_point(point))

    def problem(claims: dict[str, Any]) -> str | None:
        if door is not None and claims["door"] != door:
            return "request is for another door"
        return None

    checked = verify_jws(
        token, resolve, clock=clock, replay_cache=replay_cache, audience=None, typ=None,
        string_claims=("cred", "door", "adv"), max_lifetime=NEARBY_MAX_LIFETIME,
        leeway=leeway, replay_scope="cred", check_claims=problem,
    )
    if isinstance(checked, TokenRejection):
        return checked
    claims = checked.claims
    return VerifiedNearbyRequest(
        credential=claims["cred"], door=claims["door"], adv=claims["adv"], jti=checked.jti,
        issued_at=checked.issued_at, expires_at=checked.expires_at,
    )
