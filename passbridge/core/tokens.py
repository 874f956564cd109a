"""Signed tokens: how a mobile factor (and a remote or nearby request) earns the core's trust.

This lives in the core because the core accepts mobile factors only as
tokens; it does no I/O. PyJWT mints every token and prepares (and so
validates) every verification key once, when the trust list is loaded. An
``EdDSA`` signature is checked by PyJWT's own algorithm object; an ``ES256``
one by the same pyca/cryptography call that object makes, minus its
per-token overhead (a fresh ``ECDSA`` object and ``int``-based DER encoding
every time): the raw ``r || s`` is wrapped in DER directly and verified with
the prepared key. The compact serialisation is
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

Order of checks, on purpose: size and shape, key lookup, signature,
claim types, times, and only then the single-use ``jti`` record, so a forged
or stale token can never burn a legitimate token's ``jti``. No claim is
trusted before the signature checks out except what picks the key.
"""

from __future__ import annotations

import binascii
import hashlib
import heapq
import json
import secrets
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from json.scanner import make_scanner
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from jwt.algorithms import Algorithm

from passbridge.clock import Clock, SystemClock
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


SignatureCheck = Callable[[bytes, bytes], bool]

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
# DER pieces for a P-256 (r, s) pair whose halves both start with a non-zero
# byte (all but about 1 in 128 signatures): INTEGER headers by the half's top
# bit (set: a 0x00 byte keeps it positive), SEQUENCE header by how many
# halves needed that byte.
_DER_INTEGER = (b"\x02\x20", b"\x02\x21\x00")
_DER_SEQUENCE = (b"\x30\x44", b"\x30\x45", b"\x30\x46")


def p256_raw_to_der(raw: bytes) -> bytes:
    """The DER ECDSA-Sig-Value of a 64-byte JWS ``r || s`` signature.

    The same bytes as ``encode_dss_signature`` of the two halves (a
    property test holds it to that), built directly in the common case.
    """
    if len(raw) != 64:
        raise ValueError("an ES256 signature is 64 bytes")
    r, s = raw[:32], raw[32:]
    r0, s0 = r[0], s[0]
    if r0 and s0:
        hr, hs = r0 >> 7, s0 >> 7
        return b"".join((_DER_SEQUENCE[hr + hs], _DER_INTEGER[hr], r, _DER_INTEGER[hs], s))
    return encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))


def _signature_check(alg: str, key: object) -> SignatureCheck | None:
    """A ``(signing input, signature) -> bool`` check for a key pinned to ``alg``.

    None for a key that does not fit its algorithm (PyJWT's ``prepare_key``
    and key-length checks decide), which then verifies nothing. ES256 makes
    the call PyJWT's ``ECAlgorithm.verify`` makes, with the same outcome for
    every input: a signature that is not 64 bytes, or does not verify, is
    False.
    """
    jws = _prepare(alg, key)
    if jws is None:
        return None
    algorithm, prepared = jws
    if alg != "ES256":
        def by_pyjwt(message: bytes, signature: bytes) -> bool:
            return bool(algorithm.verify(message, prepared, signature))

        return by_pyjwt
    public = prepared.public_key() if isinstance(prepared, ec.EllipticCurvePrivateKey) else prepared
    assert isinstance(public, ec.EllipticCurvePublicKey)
    verify = public.verify

    def es256(message: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        # p256_raw_to_der, inlined for the common case.
        r0, s0 = signature[0], signature[32]
        if r0 and s0:
            hr, hs = r0 >> 7, s0 >> 7
            der = b"".join((_DER_SEQUENCE[hr + hs], _DER_INTEGER[hr], signature[:32],
                            _DER_INTEGER[hs], signature[32:]))
        else:
            der = p256_raw_to_der(signature)
        try:
            verify(der, message, _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True

    return es256


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
    # The signature check for the pinned algorithm, with the key prepared
    # by PyJWT (curve checked) once here rather than on every token; None
    # for a key that does not fit its algorithm, which then verifies nothing.
    _signature: SignatureCheck | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_signature", _signature_check(self.alg, self.key))

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


# As module constants for the hot path: on Python 3.11 reading an enum member
# as a class attribute costs ten times a global lookup.
_FRESH, _USED, _FULL = ReplayVerdict.FRESH, ReplayVerdict.REPLAYED, ReplayVerdict.FULL


class ReplayCache:
    """Single-use record of token ids, kept until each one's expiry plus leeway.

    Pruning is lazy and amortised: ids are grouped by their exact expiry
    time (a bridge's tokens mostly share whole-second expiries), a heap
    orders the groups, and a group goes as a whole once its expiry plus
    leeway has passed. Recording an id is a set insert and a list append;
    only the first id of a new expiry touches the heap. When full of
    unexpired entries it refuses new tokens rather than forgetting one still
    in its lifetime, which would let that token be replayed. Thread-safe:
    NFC and BLE adapters verify from their own threads.
    """

    def __init__(self, max_entries: int = 1_000_000, *, leeway: float = DEFAULT_LEEWAY) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._seen: set[str] = set()
        self._by_expiry: dict[float, list[str]] = {}
        self._heap: list[float] = []  # the keys of _by_expiry
        # The soonest expiry plus leeway: before then there is nothing to prune.
        self._next_prune = float("inf")
        self._lock = threading.Lock()
        self.leeway = leeway

    @property
    def leeway(self) -> float:
        return self._leeway

    @leeway.setter
    def leeway(self, seconds: float) -> None:
        with self._lock:
            self._leeway = seconds
            self._next_prune = self._heap[0] + seconds if self._heap else float("inf")

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def _prune(self, now: float) -> None:
        heap, leeway = self._heap, self._leeway
        while heap and heap[0] + leeway < now:
            self._seen.difference_update(self._by_expiry.pop(heapq.heappop(heap)))
        self._next_prune = heap[0] + leeway if heap else float("inf")

    def check_and_add(self, key: str, expires_at: float, now: float) -> ReplayVerdict:
        """Record ``key`` as used until ``expires_at`` (epoch seconds), atomically."""
        with self._lock:
            if now > self._next_prune:
                self._prune(now)
            seen = self._seen
            if key in seen:
                return _USED
            if len(seen) >= self.max_entries:
                return _FULL
            seen.add(key)
            group = self._by_expiry.get(expires_at)
            if group is not None:
                group.append(key)
                return _FRESH
            self._by_expiry[expires_at] = [key]
            heapq.heappush(self._heap, expires_at)
            self._next_prune = min(self._next_prune, expires_at + self._leeway)
            return _FRESH


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
# The C scanner behind json.loads, called directly: json.loads and
# JSONDecoder.raw_decode add Python-level frames and a whitespace regex.
_SCAN_JSON: Callable[[str, int], tuple[Any, int]] = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
# "=" padding that completes the last quad, by the unpadded length mod 4
# (None: a lone character, which no encoding produces).
_PADDING = (b"", None, b"==", b"=")


class _NotCanonical(ValueError):
    """A segment that PyJWT's strict base64url decoding would refuse."""


def _unb64(segment: bytes) -> bytes:
    """Decode one base64url segment exactly as strictly as PyJWT does.

    Only the URL-safe alphabet; "=" padding only to complete the last quad
    (at most two); no length that leaves a lone character; unused bits zero.
    """
    if segment and segment[-1] != 61:  # no "=": what JWS producers send
        quad_rem = len(segment) & 3
        pad = _PADDING[quad_rem]
        if pad is None or _B64URL_VALUE[segment[-1]] & _SPARE_BITS[quad_rem]:
            raise _NotCanonical
        try:
            return binascii.a2b_base64(
                segment.translate(_TO_STANDARD_B64) + pad, strict_mode=True
            )
        except binascii.Error as exc:
            raise _NotCanonical from exc
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
        value, end = _SCAN_JSON(text, 0)
        if end == len(text):
            return value
    except (ValueError, StopIteration):  # not UTF-8, not JSON, or not from index 0
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
    # Optional shortcut, given the claims, the key's issuer and the audience:
    # True only when every check of _claims_problem would pass (so they may
    # be skipped); False means "look closely".
    claims_pass: Callable[[dict[str, Any], str | None, str | None], bool] | None = None

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
    ) -> _Policy:
        strings = tuple(string_claims)
        required = ("iat", "exp", "jti", *strings, *(("aud",) if audience is not None else ()))
        return cls(
            audience, None if typ is None else tuple(typ), strings, required,
            float(max_lifetime), float(leeway), replay_scope, check_claims, claims_pass,
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
    if key._signature is None:  # noqa: SLF001 - this module's own key object
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
    check_signature = key._signature  # noqa: SLF001 - this module's own key object
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
            return problem
    jti, iat, exp, nbf = claims["jti"], claims["iat"], claims["exp"], get("nbf")

    # --- times, against the injected clock
    now = now_seconds()
    leeway = p.leeway
    if iat > now + leeway:
        return _invalid("issued in the future")
    if nbf is not None and nbf > now + leeway:
        return _invalid("not yet valid")
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
    return _invalid("replay cache full")


_EXPIRED = TokenRejection(Reason.TOKEN_EXPIRED, "token expired")
_REPLAYED = TokenRejection(Reason.TOKEN_REPLAYED, "token already used")


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


class MintedTokens:
    """The exact tokens this process's own minter signed, for its own verifier.

    When the in-process bridge and the core share a process, the core may
    trust a token without checking its ECDSA signature again IF it can tell
    that these are exactly the bytes the minter produced: the minter signed
    them with its key a moment ago, so the signature is good by construction.
    The record holds the SHA-256 digest of each minted token (never the
    token) and is consulted by a dict lookup on the digest of the presented
    bytes: forged or altered bytes cannot have a recorded digest, and the
    lookup's timing depends on that digest, not on how much of a genuine
    token an attacker guessed. A digest is taken out when it is used, so it
    vouches once; a second presentation of the same bytes is verified in
    full (and is then a replay). Only the signature step is skipped: the
    header, key pinning, every claim, the times and the single-use ``jti``
    are checked exactly as for any token.

    Bounded: beyond ``max_entries`` the oldest digests are forgotten, and a
    token whose digest was forgotten is simply verified in full. The
    verifier accepts the vouch only for a key of its trust list that holds
    the minter's own public key (see FactorTokenVerifier).
    """

    def __init__(self, public_key: PublicKey, *, max_entries: int = 1024) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.public_key = public_key
        self.max_entries = max_entries
        self.vouched = 0  # how many tokens skipped the signature check (for tests, metrics)
        self._digests: dict[bytes, None] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._digests)

    def add(self, token: str) -> None:
        digest = hashlib.sha256(token.encode("ascii")).digest()
        with self._lock:
            digests = self._digests
            while len(digests) >= self.max_entries:
                del digests[next(iter(digests))]  # the oldest
            digests[digest] = None

    def take(self, token: bytes) -> bool:
        """Whether these exact bytes were minted here and not yet used; uses them up."""
        digest = hashlib.sha256(token).digest()
        with self._lock:
            if digest not in self._digests:
                return False
            del self._digests[digest]
            self.vouched += 1
            return True


def _same_public_key(a: object, b: object) -> bool:
    """Whether two keys are the same public key (compared once, at set-up)."""
    def spki(key: object) -> bytes | None:
        if isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
            key = key.public_key()
        if isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
            return key.public_bytes(serialization.Encoding.DER,
                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        return None

    first = spki(a)
    return first is not None and first == spki(b)


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
        if not 0 < lifetime <= FACTOR_MAX_LIFETIME:
            raise ValueError(f"lifetime must be in (0, {FACTOR_MAX_LIFETIME:g}] seconds")
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
            "exp": iat + (int(self.lifetime) if self.lifetime.is_integer() else self.lifetime),
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


_B64_URLSAFE = bytes.maketrans(b"+/", b"-_")
# json.dumps(..., separators=(",", ":")) makes a new encoder on every call;
# this is the very same encoder, made once.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


def _b64url(data: bytes) -> bytes:
    """Unpadded base64url, the same bytes as PyJWT's ``base64url_encode``."""
    return binascii.b2a_base64(data, newline=False).translate(_B64_URLSAFE).rstrip(b"=")


def p256_der_to_raw(der: bytes) -> bytes:
    """The 64-byte JWS ``r || s`` of a DER ECDSA-Sig-Value from a P-256 key.

    The same bytes as PyJWT's ``der_to_raw_signature``; the DER is read
    directly in the shapes a P-256 signer emits, anything else by
    ``decode_dss_signature``.
    """
    if len(der) >= 8 and der[0] == 0x30 and der[1] == len(der) - 2 and der[2] == 0x02:
        rlen = der[3]
        r = der[4: 4 + rlen]
        at = 4 + rlen
        if at + 2 <= len(der) and der[at] == 0x02 and 1 <= rlen <= 33:
            slen = der[at + 1]
            s = der[at + 2:]
            if len(s) == slen and 1 <= slen <= 33 and r[0] < 0x80 and s[0] < 0x80:
                r, s = r.lstrip(b"\x00"), s.lstrip(b"\x00")
                if len(r) <= 32 and len(s) <= 32:
                    return r.rjust(32, b"\x00") + s.rjust(32, b"\x00")
    r_int, s_int = decode_dss_signature(der)
    return r_int.to_bytes(32, "big") + s_int.to_bytes(32, "big")


def _signer(alg: str, key: PrivateKey) -> Callable[[bytes], bytes]:
    """``signing input -> raw JWS signature`` for a private key that fits ``alg``."""
    if alg == "ES256":
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        sign_ec = key.sign

        def es256(message: bytes) -> bytes:
            return p256_der_to_raw(sign_ec(message, _ECDSA_SHA256))

        return es256
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key.sign


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
    try:
        policy = _backend_policy(site_id, door, require_door, float(leeway))
        resolve = by_kid(keys)

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


@dataclass(frozen=True, slots=True)
class VerifiedNearbyRequest:
    credential: str
    door: str
    adv: str
    jti: str
    issued_at: datetime
    expires_at: datetime
    side: Side = Side.IN  # optional ``side`` claim: the exit side of an In/Out door

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
        if claims.get("side", "in") not in ("in", "out"):
            return "side must be 'in' or 'out'"
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
        side=Side(claims.get("side", "in")),
        credential=claims["cred"], door=claims["door"], adv=claims["adv"], jti=checked.jti,
        issued_at=checked.issued_at, expires_at=checked.expires_at,
    )
