"""Bridges vouch only for what their trust entry names (interfaces.md, issue 8 item 4).

A trust entry's ``doors`` (default: every door) and ``factors`` (default:
nfc, ble, card; ``remote`` and ``nearby`` only when listed) bound what a
bridge key's factor tokens may speak for. A genuine token outside them is an
audited ``token_invalid`` decision; the in-process bridge keeps every path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from passbridge.clock import ManualClock
from passbridge.core.model import BRIDGE_DEFAULT_FACTORS, Factor, Reason, Side
from passbridge.core.tokens import (
    FactorTokenMinter,
    FactorTokenVerifier,
    TokenRejection,
    VerifiedFactor,
    public_key_to_pem,
)
from passbridge.errors import ConfigError
from passbridge.service.app import create_app
from passbridge.service.runtime import memory_services
from passbridge.site_file import parse_site
from tests.service_support import (
    BRIDGE,
    PIN_KEY,
    Client,
    Keys,
    Rig,
    bridge_minter,
    make_rig,
    remote_token,
    site_document,
)

NOW = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)


def _doc(keys: Keys, **bridge: Any) -> dict[str, Any]:
    doc = site_document(public_key_to_pem(keys.backend), public_key_to_pem(keys.bridge))
    doc["trust"]["bridges"][0].update(bridge)
    return doc


def _problems(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_site(doc, file="site.yaml", pin_key=PIN_KEY)
    return {p.path: p.message for p in caught.value.problems}


# --- the site file ----------------------------------------------------------

def test_trust_entry_defaults_to_every_door_and_card_like_factors() -> None:
    site = parse_site(_doc(Keys()), file="site.yaml", pin_key=PIN_KEY)
    (bridge,) = site.bridges
    assert bridge.doors is None
    assert bridge.factors == BRIDGE_DEFAULT_FACTORS == {Factor.NFC, Factor.BLE, Factor.CARD}


def test_trust_entry_names_doors_and_factors() -> None:
    doc = _doc(Keys(), doors=["front", "side"], factors=["nfc", "remote"])
    (bridge,) = parse_site(doc, file="site.yaml", pin_key=PIN_KEY).bridges
    assert bridge.doors == {"front", "side"}
    assert bridge.factors == {Factor.NFC, Factor.REMOTE}


def test_trust_entry_scope_changes_the_revision() -> None:
    keys = Keys()
    a = parse_site(_doc(keys), file="s", pin_key=PIN_KEY).revision
    b = parse_site(_doc(keys, factors=["nfc"]), file="s", pin_key=PIN_KEY).revision
    assert a != b


def test_unknown_door_and_factor_in_a_trust_entry_are_placed_errors() -> None:
    problems = _problems(
        _doc(Keys(), doors=["front", "garage"], factors=["nfc", "pin", "teleport"]))
    assert "garage" in problems["trust.bridges[0].doors[1]"]
    assert "PIN never travels" in problems["trust.bridges[0].factors[1]"]
    assert "teleport" in problems["trust.bridges[0].factors[2]"]
    assert set(problems) == {
        "trust.bridges[0].doors[1]", "trust.bridges[0].factors[1]", "trust.bridges[0].factors[2]"
    }


def test_scope_lists_must_be_lists_and_only_on_bridges() -> None:
    problems = _problems(_doc(Keys(), doors="front", factors="nfc"))
    assert "expected a list" in problems["trust.bridges[0].doors"]
    assert "expected a list" in problems["trust.bridges[0].factors"]
    doc = _doc(Keys())
    doc["trust"]["backends"][0]["doors"] = ["front"]
    assert "unknown key" in _problems(doc)["trust.backends[0].doors"]


# --- the verifier -----------------------------------------------------------

def _verify(keys: Keys, token_factor: Factor, door: str, **bridge: Any
            ) -> VerifiedFactor | TokenRejection:
    site = parse_site(_doc(keys, **bridge), file="site.yaml", pin_key=PIN_KEY)
    clock = ManualClock(NOW)
    verifier = FactorTokenVerifier("hq", site.bridges, clock=clock)
    token = FactorTokenMinter(BRIDGE, keys.bridge, site_id="hq", clock=clock).mint(
        user="alice", door=door, side=Side.IN, factor=token_factor, credential="alice-phone")
    return verifier.verify(token)


@pytest.mark.parametrize("factor", sorted(BRIDGE_DEFAULT_FACTORS))
def test_default_scope_vouches_for_card_like_factors_at_every_door(factor: Factor) -> None:
    assert isinstance(_verify(Keys(), factor, "vault"), VerifiedFactor)


@pytest.mark.parametrize("factor", [Factor.REMOTE, Factor.NEARBY])
def test_default_scope_never_vouches_for_remote_or_nearby(factor: Factor) -> None:
    got = _verify(Keys(), factor, "front")
    assert isinstance(got, TokenRejection) and got.reason is Reason.TOKEN_INVALID
    assert f"may not vouch for {factor.value}" in got.detail


def test_listed_factors_and_doors_bound_the_bridge() -> None:
    keys = Keys()
    scope = {"doors": ["side"], "factors": ["remote"]}
    assert isinstance(_verify(keys, Factor.REMOTE, "side", **scope), VerifiedFactor)
    other_door = _verify(keys, Factor.REMOTE, "front", **scope)
    assert isinstance(other_door, TokenRejection) and "door 'front'" in other_door.detail
    other_factor = _verify(keys, Factor.NFC, "side", **scope)
    assert isinstance(other_factor, TokenRejection) and "nfc" in other_factor.detail


# --- through the service ----------------------------------------------------


async def test_bridge_key_minting_an_admin_remote_in_lockdown_is_an_audited_refusal(
    rig: tuple[Rig, Client],
) -> None:
    r, client = rig
    r.services.core.set_lockdown(True)
    token = bridge_minter(r.keys, r.clock).mint(
        user="alice", door="side", side=Side.IN, factor=Factor.REMOTE,
        credential="backend:app-backend", evidence={})
    resp = await client.post("/v1/factors", data=token)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["result"], body["reason"]) == ("denied", "token_invalid")
    events = await r.services.audit.page(0, 10)
    assert [(e["reason"], e["result"]) for e in events] == [("token_invalid", "denied")]
    assert "may not vouch for remote" in events[0]["detail"]


async def test_in_process_bridge_keeps_remote_and_nearby(rig: tuple[Rig, Client]) -> None:
    """The service's own key (not in trust.bridges) still serves the remote path."""
    r, client = rig
    r.services.core.set_lockdown(True)
    token = remote_token(r.keys, r.clock, "side")
    resp = await client.post("/v1/doors/side/remote-unlock",
                             headers={"Authorization": f"Bearer {token}"})
    body = await resp.json()
    assert (body["result"], body["reason"]) == ("granted", "access_granted")


async def test_bridge_outside_its_doors_is_refused_inside_them_decided() -> None:
    r = make_rig()
    site = parse_site(_doc(r.keys, doors=["side"]), file="site.yaml",
                      pin_key=r.keystore.pin_key())
    services = memory_services(site, clock=r.clock, keystore=r.keystore)
    async with TestClient(TestServer(create_app(services))) as client:
        minter = bridge_minter(r.keys, r.clock)
        outside = minter.mint(user="alice", door="pad", side=Side.IN, factor=Factor.NFC,
                              credential="alice-phone", evidence={})
        inside = minter.mint(user="alice", door="side", side=Side.IN, factor=Factor.NFC,
                             credential="alice-phone", evidence={})
        first = await (await client.post("/v1/factors", data=outside)).json()
        second = await (await client.post("/v1/factors", data=inside)).json()
    assert (first["result"], first["reason"]) == ("denied", "token_invalid")
    assert (second["result"], second["reason"]) == ("granted", "access_granted")
    assert len(await services.audit.page(0, 10)) == 2
