"""The core verifies every signed statement it decides on, in-process bridges included.

A remote unlock hands the backend's verified request to the core: no factor
token is minted for it. A factor token the in-process bridge mints is
verified by the core in full, with PyJWT, like any other; a token signed
with the very same bridge key but arriving from outside is verified the
same way, and an altered one is refused.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from jwt.algorithms import ECAlgorithm

from passbridge.core.model import Factor, Side
from passbridge.core.tokens import FactorTokenMinter
from tests.service_support import Client, Rig, remote_token


@pytest.fixture
def pyjwt_verifies(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every ES256 signature PyJWT checks, by signing input."""
    seen: list[bytes] = []
    verify = ECAlgorithm.verify

    def counting(self: ECAlgorithm, msg: bytes, key: Any, sig: bytes) -> bool:
        seen.append(msg)
        return verify(self, msg, key, sig)

    monkeypatch.setattr(ECAlgorithm, "verify", counting)
    return seen


def outside_minter(r: Rig) -> FactorTokenMinter:
    """The in-process bridge's own key and id, used from outside the process."""
    bridge = r.keystore.bridge_key()
    return FactorTokenMinter(bridge.id, bridge.private_key, alg=bridge.alg, site_id="hq",
                             clock=r.clock)


async def test_remote_unlock_needs_no_bridge_minter(rig: tuple[Rig, Client],
                                                    pyjwt_verifies: list[bytes]) -> None:
    """The backend's request is the statement: one PyJWT verify, nothing minted."""
    r, client = rig
    r.services.controller.minter = None  # a remote unlock must not need the bridge
    token = remote_token(r.keys, r.clock, "side")
    resp = await client.post("/v1/doors/side/remote-unlock",
                             headers={"Authorization": f"Bearer {token}"})
    body = await resp.json()
    assert resp.status == 200 and (body["result"], body["reason"]) == ("granted", "access_granted")
    assert pyjwt_verifies == [token.rsplit(".", 1)[0].encode()]
    (record,) = await r.services.audit.page(0, 10)
    assert record["factor"] == "remote" and record["credential"] == "backend:app-backend"


async def test_in_process_bridge_tokens_are_verified_by_pyjwt(
    rig: tuple[Rig, Client], pyjwt_verifies: list[bytes]
) -> None:
    """The in-process bridge's factor token is verified in full, not taken on its word."""
    r, _ = rig
    decision = await r.services.controller.mobile_factor(
        user="alice", door="side", side=Side.IN, factor=Factor.BLE, credential="alice-phone",
        evidence={"rssi": -50})
    assert decision.result.value == "granted"
    assert len(pyjwt_verifies) == 1


async def test_same_key_token_from_outside_is_verified_in_full(
    rig: tuple[Rig, Client], pyjwt_verifies: list[bytes]
) -> None:
    r, client = rig
    token = outside_minter(r).mint(user="alice", door="side", side=Side.IN, factor=Factor.BLE,
                                   credential="alice-phone", evidence={"rssi": -50})
    resp = await client.post("/v1/factors", data=token)
    body = await resp.json()
    assert (body["result"], body["reason"]) == ("granted", "access_granted")
    assert pyjwt_verifies == [token.rsplit(".", 1)[0].encode()]


async def test_altered_token_is_refused(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    token = outside_minter(r).mint(user="bob", door="side", side=Side.IN, factor=Factor.BLE,
                                   credential="bob-phone", evidence={})
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = "alice"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    resp = await client.post("/v1/factors", data=f"{head}.{forged_body}.{sig}")
    assert resp.status == 401  # no trusted key signed these bytes: nobody to audit
    assert (await resp.json())["error"]["code"] == "token_invalid"
    assert await r.services.audit.page(0, 10) == []
