"""Forged, stale and replayed tokens against remote unlock and /v1/factors.

None may grant. Remote unlock refuses its caller (401, the reason as the
error code). /v1/factors refuses a token no trusted key signed the same way
(401, no audit record: anybody's bytes); a genuine token that fails a later
check is a recorded denial with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from passbridge.core.tokens import FACTOR_TOKEN_TYP, new_jti, public_key_to_pem
from tests.service_support import BACKEND, BRIDGE, Client, Rig, _p256


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def hs256_with_public_pem(header: dict[str, Any], claims: dict[str, Any], pem: str) -> str:
    head = _b64(json.dumps({**header, "alg": "HS256"}).encode())
    body = _b64(json.dumps(claims).encode())
    mac = hmac.new(pem.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


Attack = Callable[[Rig, dict[str, Any], dict[str, Any], Any, str], str]


def _sign(key: Any, header: dict[str, Any], claims: dict[str, Any]) -> str:
    return jwt.encode(claims, key, algorithm="ES256", headers=header)


def _tamper(token: str) -> str:
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[5] ^= 1
    return f"{head}.{body}.{_b64(bytes(raw))}"


ATTACKS: dict[str, tuple[Callable[[Rig, dict[str, Any], dict[str, Any], Any], str], str]] = {
    "bad_signature": (lambda r, h, c, k: _tamper(_sign(k, h, c)), "token_invalid"),
    "other_key": (lambda r, h, c, k: _sign(_p256(), h, c), "token_invalid"),
    "alg_none": (lambda r, h, c, k: hand_made({**h, "alg": "none"}, c), "token_invalid"),
    "hs256_public_pem": (
        lambda r, h, c, k: hs256_with_public_pem(h, c, public_key_to_pem(k)), "token_invalid"),
    "expired": (lambda r, h, c, k: _sign(k, h, {**c, "iat": c["iat"] - 100,
                                                "exp": c["iat"] - 80}), "token_expired"),
    "not_yet_valid": (lambda r, h, c, k: _sign(k, h, {**c, "nbf": c["iat"] + 60}),
                      "token_invalid"),
    "issued_in_future": (lambda r, h, c, k: _sign(k, h, {**c, "iat": c["iat"] + 60,
                                                         "exp": c["iat"] + 70}), "token_invalid"),
    "wrong_audience": (lambda r, h, c, k: _sign(k, h, {**c, "aud": "other-site"}),
                       "token_invalid"),
    "wrong_door": (lambda r, h, c, k: _sign(k, h, {**c, "door": "front"}), "token_invalid"),
    "too_long_lived": (lambda r, h, c, k: _sign(k, h, {**c, "exp": c["iat"] + 3600}),
                       "token_invalid"),
    "unknown_kid": (lambda r, h, c, k: _sign(k, {**h, "kid": "nobody"}, c), "token_invalid"),
    "oversized": (lambda r, h, c, k: _sign(k, h, {**c, "pad": "x" * 4000}), "token_invalid"),
    "garbage": (lambda r, h, c, k: "garbage.not-a.token", "token_invalid"),
    "not_jws": (lambda r, h, c, k: "%%%%", "token_invalid"),
}
# Attacks whose signature never verifies against a trusted key.
UNVERIFIED = frozenset({"bad_signature", "other_key", "alg_none", "hs256_public_pem",
                        "unknown_kid", "oversized", "garbage", "not_jws"})



def _remote_parts(r: Rig) -> tuple[dict[str, Any], dict[str, Any], Any]:
    now = int(r.clock.now().timestamp())
    claims = {"iss": BACKEND, "aud": "hq", "sub": "alice", "door": "side", "iat": now,
              "exp": now + 30, "jti": new_jti()}
    return {"kid": BACKEND}, claims, r.keys.backend


def _factor_parts(r: Rig) -> tuple[dict[str, Any], dict[str, Any], Any]:
    now = int(r.clock.now().timestamp())
    claims = {"iss": BRIDGE, "aud": "hq", "sub": "alice", "door": "side", "side": "in",
              "factor": "nfc", "cred": "alice-phone", "iat": now, "exp": now + 10,
              "jti": new_jti(), "ev": {}}
    return {"kid": BRIDGE, "typ": FACTOR_TOKEN_TYP}, claims, r.keys.bridge


async def _granted_in_audit(r: Rig) -> int:
    return sum(1 for e in await r.services.audit.page(0, 1000) if e.get("result") == "granted")


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_remote_unlock_attack_is_refused(rig: tuple[Rig, Client], attack: str) -> None:
    r, client = rig
    make, reason = ATTACKS[attack]
    header, claims, key = _remote_parts(r)
    token = make(r, header, claims, key)
    resp = await client.post("/v1/doors/side/remote-unlock",
                             headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401, await resp.text()
    assert (await resp.json())["error"]["code"] == reason
    assert await _granted_in_audit(r) == 0


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_factor_token_attack_is_denied(rig: tuple[Rig, Client], attack: str) -> None:
    r, client = rig
    make, reason = ATTACKS[attack]
    header, claims, key = _factor_parts(r)
    token = make(r, header, claims, key)
    resp = await client.post("/v1/factors", data=token)
    if attack == "wrong_door":
        # A well-signed token for another door is that door's decision: the
        # door-mismatch check belongs to URLs that name a door.
        assert resp.status == 200
        return
    if attack in UNVERIFIED:
        assert resp.status == 401, await resp.text()
        assert (await resp.json())["error"]["code"] == reason
        assert await r.services.audit.page(0, 10) == []
        return
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["result"], body["reason"]) == ("denied", reason)
    assert [e["reason"] for e in await r.services.audit.page(0, 10)] == [reason]
    assert await _granted_in_audit(r) == 0


async def test_replayed_remote_token_is_refused(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    header, claims, key = _remote_parts(r)
    token = _sign(key, header, claims)
    first = await client.post("/v1/doors/side/remote-unlock",
                              headers={"Authorization": f"Bearer {token}"})
    assert (await first.json())["result"] == "granted"
    again = await client.post("/v1/doors/side/remote-unlock",
                              headers={"Authorization": f"Bearer {token}"})
    assert again.status == 401 and (await again.json())["error"]["code"] == "token_replayed"
    assert await _granted_in_audit(r) == 1


async def test_replayed_factor_token_is_denied(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    header, claims, key = _factor_parts(r)
    token = _sign(key, header, claims)
    first = await (await client.post("/v1/factors", data=token)).json()
    assert first["result"] == "granted"
    again = await (await client.post("/v1/factors", data=token)).json()
    assert (again["result"], again["reason"]) == ("denied", "token_replayed")


async def test_remote_token_for_another_door_is_refused_at_the_url(
    rig: tuple[Rig, Client],
) -> None:
    r, client = rig
    header, claims, key = _remote_parts(r)
    token = _sign(key, header, {**claims, "door": "front"})
    resp = await client.post("/v1/doors/side/remote-unlock",
                             headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401


async def test_factor_token_replayed_through_remote_path_cannot_grant(
    rig: tuple[Rig, Client],
) -> None:
    """A bridge's factor token is not a backend credential (other key, other kid)."""
    r, client = rig
    header, claims, key = _factor_parts(r)
    token = _sign(key, header, claims)
    resp = await client.post("/v1/doors/side/remote-unlock",
                             headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401


async def test_header_beyond_the_http_limit_never_reaches_a_decision(
    rig: tuple[Rig, Client],
) -> None:
    r, client = rig
    header, claims, key = _remote_parts(r)
    token = _sign(key, header, {**claims, "pad": "x" * 9000})
    resp = await client.post("/v1/doors/side/remote-unlock",
                             headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 400
    assert await r.services.audit.page(0, 10) == []


async def test_junk_on_factors_makes_no_audit_rows_but_is_counted(
    rig: tuple[Rig, Client],
) -> None:
    """Issue 8 item 5: 20,000 junk posts once made 20,000 fsynced rows."""
    r, client = rig
    header, claims, key = _factor_parts(r)
    junk = [make(r, header, {**claims, "jti": new_jti()}, key)
            for name, (make, _) in sorted(ATTACKS.items()) if name in UNVERIFIED]
    for i in range(200):
        resp = await client.post("/v1/factors", data=junk[i % len(junk)])
        assert resp.status == 401
        body = await resp.json()
        assert set(body) == {"error"} and body["error"]["code"] == "token_invalid"
    assert await r.services.audit.page(0, 10) == []
    metrics = await (await client.get("/metrics")).text()
    assert 'passbridge_token_failures_total{path="factor",reason="token_invalid"} 200' in metrics
    assert "passbridge_decisions_total{" not in metrics


async def test_genuine_but_expired_factor_token_is_one_audited_denial(
    rig: tuple[Rig, Client],
) -> None:
    r, client = rig
    header, claims, key = _factor_parts(r)
    stale = _sign(key, header, {**claims, "iat": claims["iat"] - 100, "exp": claims["iat"] - 80})
    resp = await client.post("/v1/factors", data=stale)
    assert resp.status == 200
    assert (await resp.json())["reason"] == "token_expired"
    events = await r.services.audit.page(0, 10)
    assert [(e["result"], e["reason"]) for e in events] == [("denied", "token_expired")]
