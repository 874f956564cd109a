"""The fleet wire contract (passbridge/fleet/wire.py): names, payloads, signed statements."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from passbridge.adapters.audit_chain import COLUMNS, GENESIS, chain_hash
from passbridge.core.tokens.keys import public_key_to_pem
from passbridge.fleet import wire
from passbridge.fleet.wire import (
    AdminKey,
    AuditMessage,
    PhoneStatement,
    Refusal,
    RemoteUnlockReply,
    RemoteUnlockRequest,
    SiteStatement,
    StatementRefused,
    StatusMessage,
    WireError,
)
from passbridge.p256 import public_key_bytes

SITE = "hq"


# --- ids and names ---------------------------------------------------------------------


def test_site_token_is_s_plus_hex_and_reverses() -> None:
    assert wire.site_token("hq") == "s6871"
    for odd in ("a.b", "x~y", "Zürich 2", "*", ">"):
        token = wire.site_token(odd)
        assert re.fullmatch(r"s[0-9a-f]+", token), token
        assert wire.id_from_token(token) == odd


@pytest.mark.parametrize("bad", ["", "s", "s6", "S6871", "x6871", "s68zz", "sff"])
def test_id_from_token_refuses_what_id_token_never_makes(bad: str) -> None:
    with pytest.raises(WireError):
        wire.id_from_token(bad)


def test_subjects_and_bucket_names_follow_the_contract() -> None:
    assert wire.audit_subject("hq") == "passbridge.audit.s6871"
    assert wire.audit_msg_id("hq", 42, "ab" * 32) == "s6871:42:" + "ab" * 32
    assert wire.remote_unlock_subject("hq") == "passbridge.site.s6871.remote-unlock"
    assert wire.status_subject("hq") == "passbridge.site.s6871.status"
    assert wire.kv_bucket("hq") == "passbridge-site-s6871"
    assert wire.phone_key("alice.phone") == "phone." + wire.phone_token("alice.phone")
    assert wire.site_from_subject("passbridge.audit.s6871") == "hq"
    assert wire.site_from_subject("passbridge.site.s6871.status") == "hq"
    with pytest.raises(WireError):
        wire.site_from_subject("passbridge.other.s6871")


# --- payloads --------------------------------------------------------------------------


def _row(seq: int, previous: bytes = GENESIS) -> tuple[object, ...]:
    values: list[object] = [seq, "decision", "2026-11-29T10:00:00+00:00", f"d-{seq}", "granted",
                            None, "front", "in", "alice", "alice-phone", "nfc", "open",
                            "schedule", "r1", 5, "Zürich tap", '{"k":1}']
    assert len(values) == len(COLUMNS)
    return (*values, chain_hash(previous, values).hex())


def test_audit_message_round_trips_and_the_hub_can_recompute_the_hash() -> None:
    row = _row(1)
    message = AuditMessage.from_row(SITE, row)
    data = message.to_bytes()
    obj = json.loads(data)
    assert obj["v"] == 1 and obj["site"] == SITE and obj["seq"] == 1
    assert set(obj["row"]) == set(COLUMNS) and obj["hash"] == row[-1]
    back = AuditMessage.from_bytes(data)
    assert back == message
    assert chain_hash(GENESIS, back.row_values()).hex() == back.hash
    assert back.subject == "passbridge.audit.s6871" and back.msg_id == f"s6871:1:{back.hash}"


@pytest.mark.parametrize(("change", "field"), [
    (lambda o: o.pop("site"), "'site'"),
    (lambda o: o.update(seq=0), "'seq'"),
    (lambda o: o.update(seq=True), "'seq'"),
    (lambda o: o.update(v=2), "'v'"),
    (lambda o: o["row"].pop("door"), "'row'"),
    (lambda o: o["row"].update(extra=1), "'row'"),
    (lambda o: o["row"].update(door=1.5), "'row.door'"),
    (lambda o: o["row"].update(seq=2), "'row.seq'"),
    (lambda o: o.update(hash="AB" * 32), "'hash'"),
])
def test_audit_message_parser_names_the_bad_field(change: object, field: str) -> None:
    obj = json.loads(AuditMessage.from_row(SITE, _row(1)).to_bytes())
    change(obj)  # type: ignore[operator]
    with pytest.raises(WireError, match=field):
        AuditMessage.from_bytes(json.dumps(obj))


def test_remote_unlock_request_and_reply_round_trip() -> None:
    request = RemoteUnlockRequest("front", "Bearer a.b.c", {"side": "in"})
    assert RemoteUnlockRequest.from_bytes(request.to_bytes()) == request
    assert RemoteUnlockRequest.from_bytes(
        b'{"v":1,"door":"front","authorization":"Bearer x"}').body is None
    reply = RemoteUnlockReply(403, {"result": "denied"})
    assert RemoteUnlockReply.from_bytes(reply.to_bytes()) == reply
    with pytest.raises(WireError, match="'door'"):
        RemoteUnlockRequest.from_bytes(b'{"v":1,"authorization":"Bearer x"}')
    with pytest.raises(WireError, match="'status'"):
        RemoteUnlockReply.from_bytes(b'{"v":1,"status":42,"body":{}}')
    with pytest.raises(WireError, match="not JSON"):
        RemoteUnlockRequest.from_bytes(b"\xff")


def test_status_message_round_trips_in_utc() -> None:
    at = datetime(2026, 11, 29, 11, 0, 5, tzinfo=UTC)
    status = StatusMessage(SITE, "r1", 10, 7, at)
    data = status.to_bytes()
    assert json.loads(data)["at"] == "2026-11-29T11:00:05Z"
    assert StatusMessage.from_bytes(data) == status
    with pytest.raises(WireError, match="'at'"):
        StatusMessage.from_bytes(data.replace(b"Z", b""))


# --- signed statements ---------------------------------------------------------------


@pytest.fixture
def admin() -> tuple[ec.EllipticCurvePrivateKey, dict[str, AdminKey]]:
    private = ec.generate_private_key(ec.SECP256R1())
    return private, {"fleet-1": wire.admin_key_from_pem("fleet-1", public_key_to_pem(private))}


def test_signed_site_and_phone_statements_verify(
        admin: tuple[ec.EllipticCurvePrivateKey, dict[str, AdminKey]]) -> None:
    private, keys = admin
    site = wire.sign_statement(private, "fleet-1", wire.site_claims(SITE, 3, "site: {}", 100))
    got = wire.verify_statement(site.encode(), keys, SITE, applied_seq=2, key="site")
    assert isinstance(got, SiteStatement) and got.seq == 3 and got.document == "site: {}"
    point = public_key_bytes(ec.generate_private_key(ec.SECP256R1()))
    claims = wire.phone_enrol_claims(SITE, 4, "alice-phone", "alice", point, 100)
    enrol = wire.sign_statement(private, "fleet-1", claims)
    got = wire.verify_statement(enrol, keys, SITE, applied_seq=3,
                                key=wire.statement_key(claims))
    assert isinstance(got, PhoneStatement) and got.op == "enrol" and got.public_key == point
    revoke = wire.sign_statement(
        private, "fleet-1", wire.phone_revoke_claims(SITE, 5, "alice-phone", "alice", 100))
    got = wire.verify_statement(revoke, keys, SITE, applied_seq=4)
    assert isinstance(got, PhoneStatement) and got.op == "revoke" and got.public_key is None


def _refusal(value: bytes | str, keys: dict[str, AdminKey], **kw: object) -> StatementRefused:
    args: dict[str, object] = {"applied_seq": 0} | kw
    got = wire.verify_statement(value, keys, SITE, **args)  # type: ignore[arg-type]
    assert isinstance(got, StatementRefused), got
    return got


def test_unsigned_unknown_key_bad_signature_other_site_and_stale_are_refused(
        admin: tuple[ec.EllipticCurvePrivateKey, dict[str, AdminKey]]) -> None:
    private, keys = admin
    claims = wire.site_claims(SITE, 3, "site: {}", 100)
    good = wire.sign_statement(private, "fleet-1", claims)
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert _refusal(unsigned, keys).why is Refusal.UNSIGNED
    assert _refusal(b"site: {}", keys).why is Refusal.UNSIGNED
    assert _refusal(good.rsplit(".", 1)[0] + ".", keys).why is Refusal.UNSIGNED
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert _refusal(wire.sign_statement(stranger, "fleet-2", claims), keys).why \
        is Refusal.UNKNOWN_KEY
    forged = _refusal(wire.sign_statement(stranger, "fleet-1", claims), keys)
    assert forged.why is Refusal.BAD_SIGNATURE and forged.kid == "fleet-1"
    hs = jwt.encode(claims, "secret-secret-secret-secret-1234", algorithm="HS256",
                    headers={"kid": "fleet-1"})
    assert _refusal(hs, keys).why is Refusal.BAD_SIGNATURE
    other = wire.sign_statement(private, "fleet-1", wire.site_claims("branch", 9, "x", 100))
    assert _refusal(other, keys).why is Refusal.OTHER_SITE
    stale = _refusal(good, keys, applied_seq=3)
    assert stale.why is Refusal.STALE and stale.seq == 3
    assert _refusal(good, keys, key="phone.s61").why is Refusal.MALFORMED


@pytest.mark.parametrize("change", [
    {"iss": "someone"}, {"seq": 0}, {"seq": "4"}, {"typ": "door"}, {"document": None},
    {"typ": "phone", "phone": "p", "user": "u", "op": "enrol", "public_key": "AAAA"},
    {"typ": "phone", "phone": "p", "user": "u", "op": "wipe"},
    {"typ": "phone", "phone": "", "user": "u", "op": "revoke"},
])
def test_malformed_signed_claims_are_refused_by_field(
        admin: tuple[ec.EllipticCurvePrivateKey, dict[str, AdminKey]],
        change: dict[str, object]) -> None:
    private, keys = admin
    claims = wire.site_claims(SITE, 3, "site: {}", 100) | change
    refused = _refusal(wire.sign_statement(private, "fleet-1", claims), keys)
    assert refused.why is Refusal.MALFORMED and "field" in refused.detail


def test_admin_key_must_be_a_p256_public_pem() -> None:
    with pytest.raises(WireError, match="k1"):
        wire.admin_key_from_pem("k1", "not a pem")
    from cryptography.hazmat.primitives.asymmetric import ed25519
    ed = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(WireError, match="P-256"):
        wire.admin_key_from_pem("k1", public_key_to_pem(ed))


def test_phone_public_key_is_base64url_without_padding() -> None:
    point = public_key_bytes(ec.generate_private_key(ec.SECP256R1()))
    claims = wire.phone_enrol_claims(SITE, 1, "p", "u", point, 1)
    assert "=" not in claims["public_key"]
    assert base64.urlsafe_b64decode(claims["public_key"] + "=") == point
