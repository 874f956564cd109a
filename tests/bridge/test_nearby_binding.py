"""Nearby evidence belongs to one phone and one door (interfaces.md, issue 8 item 3).

Every case goes the production way: simulated phones advertise over the
bumble-backed bleak backend, each door radio's bleak scanner feeds its own
proximity table, the phone's signed request reaches the real aiohttp app
on a loopback port, and the decision is committed to a SQLite audit log.
Each attack below was a grant before (issue 8); each must be a recorded
denial now.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from passbridge.adapters.audit_sqlite import AuditLog
from passbridge.adapters.keystore import MemoryKeyStore
from passbridge.clock import ManualClock, SystemClock
from passbridge.core.model import Side
from passbridge.protocol.aliro_crypto import Interface
from passbridge.protocol.ble_advert import SLOT_SECONDS, parse_adv_id
from passbridge.service.app import create_app
from passbridge.service.hardware import BleDoorRadio, Placement
from passbridge.service.runtime import Services, assemble, memory_services
from passbridge.service.storage import SqliteEventStore
from passbridge.sim.ble_phone import SimulatedBlePhone
from passbridge.sim.bleak_bumble import BumbleAir
from passbridge.sim.phone import SimulatedPhone
from passbridge.sim.radios import SimulatedRadios
from passbridge.site_file import parse_site

ALWAYS_TWO_FACTOR = {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                     "start": "00:00", "end": "24:00", "state": "two_factor"}
SITE = {
    "site": {"id": "hq", "timezone": "America/Los_Angeles"},
    "doors": [
        {"id": "front", "reader": True, "keypad": True, "schedule": [ALWAYS_TWO_FACTOR]},
        {"id": "garage", "reader": True, "keypad": False},
        {"id": "lab", "reader": True, "keypad": True, "in_out": True,
         "strict_two_factor": True, "schedule": [ALWAYS_TWO_FACTOR]},
    ],
    "users": [
        {"id": "alice", "cards": ["10001"], "pin": "2468", "phones": ["alice-phone"],
         "doors": "all"},
        {"id": "bob", "cards": ["20002"], "pin": "1357", "phones": ["bob-phone"],
         "doors": "all"},
    ],
}


@dataclass
class World:
    clock: ManualClock
    services: Services
    radios: SimulatedRadios
    phones: dict[str, SimulatedPhone]
    client: TestClient[Any, Any]

    async def ask(self, phone: str, door: str, adv: str, **kwargs: Any) -> dict[str, Any]:
        """``phone``'s app asks for a nearby unlock at ``door`` naming ``adv``."""
        token = self.phones[phone].nearby_request(
            door, adv, issued_at=self.clock.now().timestamp(), **kwargs
        )
        response = await self.client.post(
            f"/v1/doors/{door}/nearby-unlock", data=token,
            headers={"Content-Type": "application/jwt"},
        )
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    async def audited(self, decision: dict[str, Any]) -> dict[str, Any]:
        """The committed audit record of ``decision``."""
        events = await self.services.audit.page(0, 1000)
        found = [e for e in events if e.get("decision_id") == decision["decision_id"]]
        assert len(found) == 1, "decision missing from the audit log"
        assert (found[0]["result"], found[0]["reason"]) == (decision["result"],
                                                            decision["reason"])
        return found[0]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = ManualClock(datetime(2026, 11, 30, 10, tzinfo=ZoneInfo("America/Los_Angeles")))
    keystore = MemoryKeyStore(clock=clock)
    site = parse_site(yaml.safe_load(yaml.safe_dump(SITE)), file="site.yaml",
                      pin_key=keystore.pin_key())
    audit = AuditLog(tmp_path / "audit.sqlite3", clock=clock)
    services = assemble(site, clock=clock, keystore=keystore, store=SqliteEventStore(audit))
    services.close_audit = False
    phones = {}
    for phone_id, user in (("alice-phone", "alice"), ("bob-phone", "bob")):
        phones[phone_id] = SimulatedPhone.create(phone_id)
        keystore.enroll_phone(phone_id, user, phones[phone_id].public_key_point)
    radios = SimulatedRadios(services.controller, keystore, clock, services.proximity, phones)
    client = TestClient(TestServer(create_app(services), host="127.0.0.1"))
    await client.start_server()
    try:
        yield World(clock, services, radios, phones, client)
    finally:
        await client.close()
        await radios.close()
        await services.audit.store.close()


async def test_a_phone_naming_another_phones_id_is_not_nearby(world: World) -> None:
    """Bob, anywhere, names the id Alice's phone (or a beacon copying it)
    advertises at the front door: the id resolves to Alice, not to Bob."""
    alices_id = await world.radios.advertise("alice-phone", -55, "front")
    hijack = await world.ask("bob-phone", "front", alices_id)
    assert (hijack["result"], hijack["reason"], hijack["user"]) == ("denied", "not_nearby", "bob")
    record = await world.audited(hijack)
    assert "another phone" in record["detail"]
    # The same evidence is good for the phone it belongs to.
    own = await world.ask("alice-phone", "front", alices_id)
    assert (own["result"], own["reason"], own["user"]) == ("granted", "bypass_nearby", "alice")


async def test_a_phone_heard_only_at_the_garage_is_not_nearby_the_front_door(
    world: World,
) -> None:
    adv = await world.radios.advertise("alice-phone", -50, "garage")
    front = await world.ask("alice-phone", "front", adv)
    assert (front["result"], front["reason"]) == ("denied", "not_nearby")
    assert "not heard by a radio of this door" in (await world.audited(front))["detail"]
    garage = await world.ask("alice-phone", "garage", adv)
    assert (garage["result"], garage["reason"]) == ("granted", "access_granted")


async def test_a_claimed_exit_side_does_not_make_an_exit(world: World) -> None:
    """Outside the strict In/Out lab door (heard by its entry radio), a
    request claiming ``side: out`` would leave with no card and no PIN."""
    adv = await world.radios.advertise("alice-phone", -50, "lab", Side.IN)
    claimed = await world.ask("alice-phone", "lab", adv, side="out")
    assert (claimed["result"], claimed["reason"], claimed["side"]) == (
        "denied", "not_nearby", "in")
    assert "claims side out" in (await world.audited(claimed))["detail"]
    # Without a claim the side is still the radio's: entering a strict door.
    entering = await world.ask("alice-phone", "lab", adv)
    assert (entering["reason"], entering["side"]) == ("bypass_disabled", "in")
    await world.audited(entering)
    # Heard by the exit radio, the same phone leaves with one factor.
    adv = await world.radios.advertise("alice-phone", -50, "lab", Side.OUT)
    leaving = await world.ask("alice-phone", "lab", adv)
    assert (leaving["result"], leaving["reason"], leaving["side"]) == (
        "granted", "access_granted", "out")


async def test_a_replayed_id_after_the_phone_rotated_is_not_nearby(world: World) -> None:
    """An id recorded at the door and replayed by a beacon after the phone
    moved two slots on (beyond the one-slot skew allowance) resolves to nobody."""
    old = await world.radios.advertise("alice-phone", -55, "front")
    world.clock.advance(2 * SLOT_SECONDS)
    new = await world.radios.advertise("alice-phone", None, "front")  # phone gone, rotated
    assert new != old
    await world.radios.beacon(parse_adv_id(old), "front", rssi=-50)
    replayed = await world.ask("alice-phone", "front", old)
    assert (replayed["result"], replayed["reason"]) == ("denied", "not_nearby")
    assert "resolves to no enrolled phone" in (await world.audited(replayed))["detail"]


async def test_a_request_whose_kid_is_not_its_cred_is_token_invalid(world: World) -> None:
    """Signed by Alice's key (found by ``cred``) but naming Bob's key in the
    header: a recorded token_invalid, never a grant."""
    adv = await world.radios.advertise("alice-phone", -50, "front")
    mixed = await world.ask("alice-phone", "front", adv, kid="bob-phone")
    assert (mixed["result"], mixed["reason"], mixed["credential"]) == (
        "denied", "token_invalid", "alice-phone")
    await world.audited(mixed)


async def test_each_bluetooth_adapter_is_evidence_for_its_own_door_only() -> None:
    """``serve --ble hci0=garage --ble hci1=front``: the production radio
    (BleDoorRadio, bleak over bumble) of each door feeds its own table."""
    clock = SystemClock()
    keystore = MemoryKeyStore(clock=clock)
    site = parse_site(yaml.safe_load(yaml.safe_dump(SITE)), file="site.yaml",
                      pin_key=keystore.pin_key())
    services = memory_services(site, clock=clock, keystore=keystore)
    phone = SimulatedPhone.create("alice-phone")
    keystore.enroll_phone("alice-phone", "alice", phone.public_key_point)
    reader = keystore.reader_key().public_key
    adv = phone.adv_id_at(reader, clock.now().timestamp())
    air = BumbleAir()
    ble_phone = SimulatedBlePhone(
        air, phone.applet(reader, interface=Interface.BLE).process, rssi=-70, adv_id=adv)
    ble_phone.place({"garage": -70})  # too weak for a Bluetooth unlock, fine for Nearby
    radios = [
        BleDoorRadio(services, Placement(f"hci{i}", door, Side.IN),
                     scanner_backend=air.scanner_backend_at(door),
                     client_backend=air.client_backend)
        for i, door in enumerate(("garage", "front"))
    ]
    client = TestClient(TestServer(create_app(services), host="127.0.0.1"))
    await ble_phone.start()
    for radio in radios:
        await radio.start()
    await client.start_server()
    try:
        for _ in range(400):
            if services.proximity.radio("garage").seen(adv) is not None:
                break
            await asyncio.sleep(0.01)
        decisions = {}
        for door in ("front", "garage"):
            token = phone.nearby_request(door, adv.hex())
            response = await client.post(f"/v1/doors/{door}/nearby-unlock", data=token)
            decisions[door] = await response.json()
        assert services.proximity.radio("front").seen(adv) is None
        assert (decisions["front"]["result"], decisions["front"]["reason"]) == (
            "denied", "not_nearby")
        assert (decisions["garage"]["result"], decisions["garage"]["reason"]) == (
            "granted", "access_granted")
    finally:
        await client.close()
        for radio in radios:
            await radio.stop()
        await ble_phone.close()
        await air.close()
