"""The fleet wire contract, shared by sites and the hub: pure, no nats import.

Everything both ends must spell the same lives here, so that they cannot
drift apart: the encoding of ids into NATS subject tokens and KV keys, the
subject, stream, bucket and key names, the JSON payloads (each with a
strict parser that names the field it refuses), and the signed fleet
statements a hub puts into a site's KV bucket (compact JWS, ES256, signed by
a fleet admin key the site trusts). /work's FLEET-CONTRACT.md and
protocols/fleet/README.md describe the same thing for people.

Parsers raise ``WireError`` (a ``ValueError``) naming the message and field;
``verify_statement`` never raises: it returns the statement or a refusal with
why, for the site's ``fleet_refused`` audit record.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.utils import base64url_decode

from passbridge.adapters.audit_chain import COLUMNS
from passbridge.errors import PassbridgeError
from passbridge.p256 import load_public_key

WIRE_VERSION = 1

# --- ids as NATS tokens ---------------------------------------------------------------

_TOKEN_RE = re.compile(r"s(?:[0-9a-f]{2})+")


def id_token(identifier: str) -> str:
    """An id as one NATS subject token / KV key part: ``s`` + lowercase hex of its
    UTF-8 bytes (``hq`` -> ``s6871``).

    Site and phone ids may hold ``.``, ``~``, spaces or non-ASCII, which a
    subject token or a KV key must not; hex keeps every id apart and is
    reversible (``id_from_token``).
    """
    if not isinstance(identifier, str) or not identifier:
        raise WireError("an id to encode must be a non-empty string")
    return "s" + identifier.encode("utf-8").hex()


def site_token(site_id: str) -> str:
    """A site id as a subject token and bucket-name part."""
    return id_token(site_id)


def phone_token(phone_id: str) -> str:
    """A phone (credential) id as a KV key part, encoded like ``site_token``."""
    return id_token(phone_id)


def id_from_token(token: str) -> str:
    """The id a token encodes (WireError if it is not one ``id_token`` makes)."""
    if not isinstance(token, str) or _TOKEN_RE.fullmatch(token) is None:
        raise WireError(f"{token!r} is not an encoded id (s + lowercase hex)")
    try:
        return bytes.fromhex(token[1:]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"{token!r} does not encode UTF-8 text") from exc


# --- names ----------------------------------------------------------------------------

AUDIT_STREAM = "PASSBRIDGE_AUDIT"
AUDIT_SUBJECTS = "passbridge.audit.>"
AUDIT_DUPLICATE_WINDOW_S = 120.0
HUB_CONSUMER = "passbridge-hub"
SITE_QUEUE_GROUP = "passbridge-site"
STATUS_SUBJECTS = "passbridge.site.*.status"
STATUS_INTERVAL_S = 5.0
ONLINE_WITHIN_S = 15.0
REMOTE_UNLOCK_TIMEOUT_S = 5.0
FLEET_ISSUER = "passbridge-fleet"
FLEET_ALG = "ES256"
SITE_KEY = "site"
PHONE_KEY_PREFIX = "phone."
# NATS's default max_payload: a statement larger than that never arrives anyway.
MAX_STATEMENT_BYTES = 1024 * 1024


def audit_subject(site_id: str) -> str:
    return f"passbridge.audit.{site_token(site_id)}"


def audit_msg_id(site_id: str, seq: int, record_hash: str) -> str:
    """The ``Nats-Msg-Id`` header of record ``seq``: JetStream drops a repeat
    within the duplicate window, the hub's (site, seq) key after it.

    The record's own chain hash is part of it. JetStream's duplicate window is
    per stream, not per subject, and any publisher may set any header: with
    ``<site>:<seq>`` alone, one site could publish first under another site's
    next id and make JetStream drop that site's real record. Nobody can know
    a record's hash before the site has written it, so nobody can take its id;
    a retry of the same record carries the same hash and is still dropped."""
    return f"{site_token(site_id)}:{seq}:{record_hash}"


def remote_unlock_subject(site_id: str) -> str:
    return f"passbridge.site.{site_token(site_id)}.remote-unlock"


def status_subject(site_id: str) -> str:
    return f"passbridge.site.{site_token(site_id)}.status"


def site_from_subject(subject: str) -> str:
    """The site id of ``passbridge.audit.<t>`` or ``passbridge.site.<t>.<what>``."""
    parts = subject.split(".")
    if len(parts) == 3 and parts[:2] == ["passbridge", "audit"]:
        return id_from_token(parts[2])
    if len(parts) == 4 and parts[:2] == ["passbridge", "site"]:
        return id_from_token(parts[2])
    raise WireError(f"subject {subject!r} names no site")


def site_inbox_prefix(site_id: str) -> str:
    """The site link's reply-inbox prefix (nats ``inbox_prefix``): per site, so
    that NATS permissions can let a site receive replies on its own inboxes
    only (with ``_INBOX.>`` it could read others' replies and KV deliveries)."""
    return f"_INBOX_{site_token(site_id)}"


def kv_bucket(site_id: str) -> str:
    """The site's KV bucket of signed statements."""
    return f"passbridge-site-{site_token(site_id)}"


def phone_key(phone_id: str) -> str:
    return PHONE_KEY_PREFIX + phone_token(phone_id)


# --- JSON payloads --------------------------------------------------------------------


class WireError(PassbridgeError, ValueError):
    """A payload or name that does not follow the fleet contract (names the field)."""


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _object(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"{what}: not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise WireError(f"{what}: not a JSON object")
    version = value.get("v")
    if version != WIRE_VERSION or isinstance(version, bool):
        raise WireError(f"{what}: field 'v': expected {WIRE_VERSION}, got {version!r}")
    return value


def _field(obj: Mapping[str, Any], name: str, what: str, kind: type | tuple[type, ...],
           *, optional: bool = False) -> Any:
    if name not in obj:
        if optional:
            return None
        raise WireError(f"{what}: field {name!r} is missing")
    value = obj[name]
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise WireError(f"{what}: field {name!r}: expected {_kind_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise WireError(f"{what}: field {name!r}: expected {_kind_name(kind)}, "
                        f"got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", str: "a string", dict: "a JSON object"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _seq(obj: Mapping[str, Any], name: str, what: str, *, minimum: int = 1) -> int:
    value: int = _field(obj, name, what, int)
    if value < minimum:
        raise WireError(f"{what}: field {name!r}: expected an integer >= {minimum}, got {value}")
    return value


_HASH_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class AuditMessage:
    """One audit record on ``passbridge.audit.<site_token>`` (contract section 1).

    ``row`` maps every ``audit_chain.COLUMNS`` name to the value stored in
    SQLite (text, integer or null), so the hub recomputes
    ``chain_hash(hash of seq-1, row_values())`` and compares ``hash``.
    """

    site: str
    seq: int
    row: Mapping[str, str | int | None]
    hash: str

    @classmethod
    def from_row(cls, site: str, row: Sequence[Any]) -> AuditMessage:
        """From a stored row: the values of ``COLUMNS`` in order, then ``hash``."""
        if len(row) != len(COLUMNS) + 1:
            raise WireError(f"an audit row has {len(COLUMNS) + 1} values, not {len(row)}")
        values = dict(zip(COLUMNS, row[: len(COLUMNS)], strict=True))
        return cls._checked(site, values["seq"], values, row[len(COLUMNS)], "audit row")

    @classmethod
    def _checked(cls, site: object, seq: object, row: Mapping[str, Any], hash_: object,
                 what: str) -> AuditMessage:
        if not isinstance(site, str) or not site:
            raise WireError(f"{what}: field 'site': expected a non-empty string")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise WireError(f"{what}: field 'seq': expected an integer >= 1, got {seq!r}")
        missing = [name for name in COLUMNS if name not in row]
        extra = sorted(set(row) - set(COLUMNS))
        if missing or extra:
            raise WireError(f"{what}: field 'row': missing columns {missing}, "
                            f"unknown columns {extra}")
        for name in COLUMNS:
            value = row[name]
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, str | int)):
                raise WireError(f"{what}: field 'row.{name}': expected text, an integer or "
                                f"null, got {type(value).__name__}")
        if row["seq"] != seq:
            raise WireError(f"{what}: field 'row.seq' ({row['seq']!r}) is not 'seq' ({seq})")
        if not isinstance(hash_, str) or _HASH_RE.fullmatch(hash_) is None:
            raise WireError(f"{what}: field 'hash': expected 64 lowercase hex digits")
        return cls(site, seq, {name: row[name] for name in COLUMNS}, hash_)

    def row_values(self) -> tuple[str | int | None, ...]:
        """The values in ``COLUMNS`` order, as ``audit_chain.chain_hash`` takes them."""
        return tuple(self.row[name] for name in COLUMNS)

    @property
    def subject(self) -> str:
        return audit_subject(self.site)

    @property
    def msg_id(self) -> str:
        return audit_msg_id(self.site, self.seq, self.hash)

    def to_bytes(self) -> bytes:
        return _dumps({"v": WIRE_VERSION, "site": self.site, "seq": self.seq,
                       "row": dict(self.row), "hash": self.hash})

    @classmethod
    def from_bytes(cls, data: bytes | str) -> AuditMessage:
        what = "audit message"
        obj = _object(data, what)
        row = _field(obj, "row", what, dict)
        return cls._checked(obj.get("site"), obj.get("seq"), row, obj.get("hash"), what)


@dataclass(frozen=True, slots=True)
class RemoteUnlockRequest:
    """Hub -> site on ``passbridge.site.<t>.remote-unlock``: the app backend's
    request exactly as the hub received it (the hub signs nothing)."""

    door: str
    authorization: str
    body: dict[str, Any] | None = None

    def to_bytes(self) -> bytes:
        return _dumps({"v": WIRE_VERSION, "door": self.door,
                       "authorization": self.authorization, "body": self.body})

    @classmethod
    def from_bytes(cls, data: bytes | str) -> RemoteUnlockRequest:
        what = "remote-unlock request"
        obj = _object(data, what)
        door: str = _field(obj, "door", what, str)
        authorization: str = _field(obj, "authorization", what, str)
        body: dict[str, Any] | None = _field(obj, "body", what, dict, optional=True)
        return cls(door, authorization, body)


@dataclass(frozen=True, slots=True)
class RemoteUnlockReply:
    """Site -> hub: the HTTP status and JSON body the site's own route would answer."""

    status: int
    body: dict[str, Any]

    def to_bytes(self) -> bytes:
        return _dumps({"v": WIRE_VERSION, "status": self.status, "body": self.body})

    @classmethod
    def from_bytes(cls, data: bytes | str) -> RemoteUnlockReply:
        what = "remote-unlock reply"
        obj = _object(data, what)
        status: int = _field(obj, "status", what, int)
        if not 100 <= status <= 599:
            raise WireError(f"{what}: field 'status': expected an HTTP status, got {status}")
        body: dict[str, Any] = _field(obj, "body", what, dict)
        return cls(status, body)


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class StatusMessage:
    """Site -> hub every ``STATUS_INTERVAL_S`` on ``passbridge.site.<t>.status``.

    ``last_seq`` is the site's newest audit record, ``acked_seq`` the newest
    the stream acknowledged: their difference is the audit backlog.
    """

    site: str
    revision: str
    last_seq: int
    acked_seq: int
    at: datetime

    def to_bytes(self) -> bytes:
        return _dumps({"v": WIRE_VERSION, "site": self.site, "revision": self.revision,
                       "last_seq": self.last_seq, "acked_seq": self.acked_seq,
                       "at": _iso_utc(self.at)})

    @classmethod
    def from_bytes(cls, data: bytes | str) -> StatusMessage:
        what = "status message"
        obj = _object(data, what)
        site: str = _field(obj, "site", what, str)
        revision: str = _field(obj, "revision", what, str)
        last_seq = _seq(obj, "last_seq", what, minimum=0)
        acked_seq = _seq(obj, "acked_seq", what, minimum=0)
        text: str = _field(obj, "at", what, str)
        try:
            at = datetime.fromisoformat(text)
        except ValueError as exc:
            raise WireError(f"{what}: field 'at': not an ISO 8601 time ({text!r})") from exc
        if at.tzinfo is None:
            raise WireError(f"{what}: field 'at': the time has no UTC offset ({text!r})")
        return cls(site, revision, last_seq, acked_seq, at.astimezone(UTC))


# --- signed fleet statements (KV values) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class AdminKey:
    """A fleet admin public key a site trusts, by its ``kid``; ES256 only."""

    kid: str
    key: ec.EllipticCurvePublicKey


def admin_key_from_pem(kid: str, pem: str | bytes) -> AdminKey:
    """A trusted fleet admin key from its public PEM (WireError if not P-256)."""
    if not kid:
        raise WireError("a fleet admin key needs a non-empty kid")
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise WireError(f"fleet admin key {kid!r}: not a readable PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve,
                                                                        ec.SECP256R1):
        raise WireError(f"fleet admin key {kid!r}: not a P-256 (ES256) public key")
    return AdminKey(kid, key)


class Refusal(StrEnum):
    """Why a site refused a KV value (the ``why`` of its ``fleet_refused`` record)."""

    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED = "malformed"
    OTHER_SITE = "other_site"
    STALE = "stale"
    # Signed and in order, but the site could not apply it (a site document
    # with problems, a public key enrolled for another phone): not in force.
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class StatementRefused:
    """A KV value the site will not apply; ``seq``/``kid`` when readable (audit only)."""

    why: Refusal
    detail: str
    seq: int | None = None
    kid: str | None = None

    @property
    def ok(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class _Verified:
    """What every verified statement carries: for which site, its order, who signed."""

    site: str
    seq: int
    iat: int
    kid: str

    @property
    def ok(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class SiteStatement(_Verified):
    """``typ: "site"``: a whole site document (YAML or JSON text) for this site."""

    document: str


@dataclass(frozen=True, slots=True)
class PhoneStatement(_Verified):
    """``typ: "phone"``: enrol (with the phone's 65-byte P-256 point) or revoke one phone."""

    phone: str
    user: str
    op: Literal["enrol", "revoke"]
    public_key: bytes | None = None


FleetStatement = SiteStatement | PhoneStatement


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def site_claims(site: str, seq: int, document: str, iat: int) -> dict[str, Any]:
    return {"iss": FLEET_ISSUER, "aud": site, "iat": iat, "seq": seq, "typ": "site",
            "document": document}


def phone_enrol_claims(site: str, seq: int, phone: str, user: str, public_key: bytes,
                       iat: int) -> dict[str, Any]:
    return {"iss": FLEET_ISSUER, "aud": site, "iat": iat, "seq": seq, "typ": "phone",
            "phone": phone, "user": user, "op": "enrol", "public_key": _b64url(public_key)}


def phone_revoke_claims(site: str, seq: int, phone: str, user: str,
                        iat: int) -> dict[str, Any]:
    return {"iss": FLEET_ISSUER, "aud": site, "iat": iat, "seq": seq, "typ": "phone",
            "phone": phone, "user": user, "op": "revoke"}


def statement_key(claims: Mapping[str, Any]) -> str:
    """The KV key a statement goes under: ``site`` or ``phone.<phone_token>``."""
    if claims.get("typ") == "site":
        return SITE_KEY
    return phone_key(str(claims["phone"]))


def sign_statement(private_key: ec.EllipticCurvePrivateKey, kid: str,
                   claims: Mapping[str, Any]) -> str:
    """A compact JWS (ES256, header ``kid``) of ``claims``: what the hub puts in KV."""
    return jwt.encode(dict(claims), private_key, algorithm=FLEET_ALG,
                      headers={"kid": kid, "typ": "JWT"})


_STATEMENT_JWS = jwt.PyJWS(algorithms=[FLEET_ALG])


def verify_statement(value: bytes | str, keys: Mapping[str, AdminKey], site: str, *,
                     applied_seq: int, key: str | None = None,
                     ) -> FleetStatement | StatementRefused:
    """Check one KV value for ``site``; never raises.

    Order: a JWS at all (else ``unsigned``), a ``kid`` naming a trusted key
    (``unknown_key``), the ES256 signature by PyJWT with the algorithm pinned
    (``bad_signature``), the claims (``malformed``), the audience
    (``other_site``), then ``seq`` > ``applied_seq`` (``stale``). ``key``,
    when given, is the KV key the value came under: a statement must sit
    under its own key. Times are not checked: order is by ``seq``, which the
    hub hands out, and a site offline for a month must still catch up.
    """
    try:
        return _verify_statement(value, keys, site, applied_seq, key)
    except Exception as exc:  # any surprise is a refusal, never an applied change
        return StatementRefused(Refusal.MALFORMED, f"unreadable ({type(exc).__name__})")


def _verify_statement(value: bytes | str, keys: Mapping[str, AdminKey], site: str,
                      applied_seq: int, kv_key: str | None) -> FleetStatement | StatementRefused:
    if isinstance(value, bytes):
        if len(value) > MAX_STATEMENT_BYTES:
            return StatementRefused(Refusal.MALFORMED, "value too large")
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return StatementRefused(Refusal.UNSIGNED, "not a compact JWS (not ASCII)")
    value = value.strip()
    parts = value.split(".")
    if len(parts) != 3 or not parts[2]:
        return StatementRefused(Refusal.UNSIGNED, "not a signed compact JWS")
    try:
        header = json.loads(base64url_decode(parts[0]))
    except (ValueError, binascii.Error, RecursionError):
        return StatementRefused(Refusal.UNSIGNED, "not a compact JWS (bad header)")
    if not isinstance(header, dict):
        return StatementRefused(Refusal.UNSIGNED, "not a compact JWS (bad header)")
    if str(header.get("alg", "")).lower() == "none":
        return StatementRefused(Refusal.UNSIGNED, "alg none")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        return StatementRefused(Refusal.UNKNOWN_KEY, "no kid in the header")
    admin = keys.get(kid)
    if admin is None:
        return StatementRefused(Refusal.UNKNOWN_KEY, f"kid {kid!r} is not a trusted "
                                "fleet admin key", kid=kid)
    try:
        decoded = _STATEMENT_JWS.decode_complete(value, admin.key, algorithms=[FLEET_ALG])
    except jwt.InvalidAlgorithmError:
        return StatementRefused(Refusal.BAD_SIGNATURE, f"algorithm {header.get('alg')!r} "
                                f"is not {FLEET_ALG}", kid=kid)
    except jwt.InvalidSignatureError:
        return StatementRefused(Refusal.BAD_SIGNATURE, "bad signature", kid=kid)
    except jwt.PyJWTError as exc:
        return StatementRefused(Refusal.BAD_SIGNATURE, f"not a JWS PyJWT accepts ({exc})",
                                kid=kid)
    try:
        claims = json.loads(decoded["payload"])
    except (ValueError, RecursionError):
        claims = None
    if not isinstance(claims, dict):
        return StatementRefused(Refusal.MALFORMED, "payload is not a JSON object", kid=kid)
    try:
        statement = _statement(claims, kid)
    except WireError as exc:
        seq = claims.get("seq")
        return StatementRefused(Refusal.MALFORMED, str(exc),
                                seq if isinstance(seq, int) else None, kid)
    if statement.site != site:
        return StatementRefused(Refusal.OTHER_SITE, f"for site {statement.site!r}, "
                                f"not {site!r}", statement.seq, kid)
    if kv_key is not None and kv_key != statement_key(claims):
        return StatementRefused(Refusal.MALFORMED, f"under key {kv_key!r}, not its own "
                                f"{statement_key(claims)!r}", statement.seq, kid)
    if statement.seq <= applied_seq:
        return StatementRefused(Refusal.STALE, f"seq {statement.seq} is not after the "
                                f"last applied {applied_seq}", statement.seq, kid)
    return statement


def _statement(claims: Mapping[str, Any], kid: str) -> FleetStatement:
    what = "fleet statement"
    if claims.get("iss") != FLEET_ISSUER:
        raise WireError(f"{what}: field 'iss': expected {FLEET_ISSUER!r}")
    site: str = _field(claims, "aud", what, str)
    iat: int = _field(claims, "iat", what, int)
    seq = _seq(claims, "seq", what)
    typ = claims.get("typ")
    if typ == "site":
        document: str = _field(claims, "document", what, str)
        return SiteStatement(site, seq, iat, kid, document)
    if typ != "phone":
        raise WireError(f"{what}: field 'typ': expected 'site' or 'phone', got {typ!r}")
    phone: str = _field(claims, "phone", what, str)
    user: str = _field(claims, "user", what, str)
    if not phone or not user:
        raise WireError(f"{what}: fields 'phone' and 'user' must not be empty")
    op = claims.get("op")
    if op == "revoke":
        return PhoneStatement(site, seq, iat, kid, phone, user, "revoke")
    if op != "enrol":
        raise WireError(f"{what}: field 'op': expected 'enrol' or 'revoke', got {op!r}")
    text: str = _field(claims, "public_key", what, str)
    try:
        point = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        load_public_key(point)
    except (ValueError, binascii.Error) as exc:
        raise WireError(f"{what}: field 'public_key': not a base64url P-256 point") from exc
    return PhoneStatement(site, seq, iat, kid, phone, user, "enrol", point)
