"""The in-process bridge's tokens skip the core's signature check, and only they do.

A remote unlock mints a factor token in this process and the core takes
those exact bytes on the minter's word (MintedTokens); a token signed with
the very same bridge key but arriving from outside is verified in full,
and an altered one is refused.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from passbridge.core.model import Factor, Side
from passbridge.core.tokens import FactorTokenMinter
from passbridge.service.app import create_app
from tests.service_support import Rig, make_rig, remote_token

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def rig() -> AsyncIterator[tuple[Rig, Client]]:
    r = make_rig()
    async with TestClient(TestServer(create_app(r.services))) as client:
        yield r, client


def outside_minter(r: Rig) -> FactorTokenMinter:
    """The in-process bridge's own key and id, but not its record: an outside copy."""
    bridge = r.keystore.bridge_key()
    return FactorTokenMinter(bridge.id, bridge.private_key, alg=bridge.alg, site_id="hq",
                             clock=r.clock)


async def test_remote_unlock_is_vouched_for_and_granted(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    minted = r.services.minted
    assert minted is not None
    bearer = f"Bearer {remote_token(r.keys, r.clock, 'side')}"
    resp = await client.post("/v1/doors/side/remote-unlock", headers={"Authorization": bearer})
    body = await resp.json()
    assert resp.status == 200 and (body["result"], body["reason"]) == ("granted", "access_granted")
    assert minted.vouched == 1 and len(minted) == 0


async def test_same_key_token_from_outside_is_verified_in_full(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    minted = r.services.minted
    assert minted is not None
    token = outside_minter(r).mint(user="alice", door="side", side=Side.IN, factor=Factor.REMOTE,
                                   credential="backend:app-backend", evidence={})
    resp = await client.post("/v1/factors", data=token)
    body = await resp.json()
    assert (body["result"], body["reason"]) == ("granted", "access_granted")
    assert minted.vouched == 0


async def test_altered_token_is_refused(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    token = outside_minter(r).mint(user="bob", door="side", side=Side.IN, factor=Factor.REMOTE,
                                   credential="backend:app-backend", evidence={})
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = "alice"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    resp = await client.post("/v1/factors", data=f"{head}.{forged_body}.{sig}")
    assert resp.status == 401  # no trusted key signed these bytes: nobody to audit
    assert (await resp.json())["error"]["code"] == "token_invalid"
    assert await r.services.audit.page(0, 10) == []
    assert r.services.minted is not None and r.services.minted.vouched == 0
