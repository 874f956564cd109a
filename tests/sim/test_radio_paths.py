"""The simulated air drives the production radio paths; what operators rely on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from passbridge.adapters.keystore import MemoryKeyStore
from passbridge.clock import ManualClock
from passbridge.core.model import Reason, Result
from passbridge.protocol.aliro_phone import PhoneApplet
from passbridge.service.runtime import Services
from passbridge.sim.radios import SimulatedRadios
from tests.service_support import services_with_phones

SITE = """
site: {id: hq, timezone: America/Los_Angeles}
doors:
  - {id: front, reader: true, keypad: true}
  - {id: garage, reader: false, keypad: false}
users:
  - {id: alice, cards: ["10001"], pin: "2468", phones: [alice-phone], doors: all}
"""


@dataclass
class Air:
    services: Services
    radios: SimulatedRadios
    keystore: MemoryKeyStore


@pytest.fixture
async def air() -> AsyncIterator[Air]:
    clock = ManualClock(datetime(2026, 11, 30, 9, tzinfo=ZoneInfo("America/Los_Angeles")))
    services, keystore, phones = services_with_phones(SITE, clock, {"alice-phone": "alice"})
    phone = phones["alice-phone"]
    radios = SimulatedRadios(
        services.controller, keystore, clock, services.proximity, {"alice-phone": phone}
    )
    yield Air(services, radios, keystore)
    await radios.close()


@pytest.mark.slow
async def test_a_tap_is_decided_when_the_machine_is_slow(
    air: Air, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scenario's result must not depend on load: the simulated phone
    answering each APDU 0.7 s late (a busy machine; a production reader's
    per-APDU deadline is 0.5 s) still gets its tap decided."""
    answer = PhoneApplet.process

    def late(applet: PhoneApplet, command: bytes) -> bytes:
        time.sleep(0.7)
        return answer(applet, command)

    monkeypatch.setattr(PhoneApplet, "process", late)
    decision = await air.radios.nfc_tap("alice-phone", "front")
    assert (decision.result, decision.reason) == (Result.GRANTED, Reason.ACCESS_GRANTED)


async def test_standard_then_fast_then_revoked(air: Air) -> None:
    first = await air.radios.nfc_tap("alice-phone", "front")
    assert (first.result, first.reason, first.user) == (
        Result.GRANTED,
        Reason.ACCESS_GRANTED,
        "alice",
    )
    # The STANDARD tap left a persistent key on both sides: the next tap is FAST.
    assert [cred for cred, _, _ in air.keystore.persistent_keys()] == ["alice-phone"]
    second = await air.radios.nfc_tap("alice-phone", "front")
    assert second.reason is Reason.ACCESS_GRANTED
    air.keystore.revoke_phone("alice-phone")
    assert list(air.keystore.persistent_keys()) == []
    revoked = await air.radios.nfc_tap("alice-phone", "front")
    assert (revoked.result, revoked.reason, revoked.user) == (
        Result.DENIED,
        Reason.UNKNOWN_CREDENTIAL,
        None,
    )
    assert revoked.detail is not None and "unknown_credential" in revoked.detail
    ble = await air.radios.ble_unlock("alice-phone", "front", rssi=-40)
    assert (ble.result, ble.reason) == (Result.DENIED, Reason.UNKNOWN_CREDENTIAL)


async def test_every_decision_is_in_the_audit_log(air: Air) -> None:
    decisions = [
        await air.radios.nfc_tap("alice-phone", "front"),
        await air.radios.ble_unlock("alice-phone", "front", rssi=-90),
        await air.radios.nfc_tap("alice-phone", "garage"),
    ]
    assert [d.reason for d in decisions] == [
        Reason.ACCESS_GRANTED,
        Reason.TOO_FAR,
        Reason.NO_SUCH_DEVICE,
    ]
    page = await air.services.audit.store.page(0, 10)
    assert [e["decision_id"] for e in page] == [d.id for d in decisions]
    assert all(e["factor"] in ("nfc", "ble") for e in page)


async def test_one_reader_cooldown_follows_grants_only(air: Air) -> None:
    """One door's Bluetooth reader (one client): a denial lets the phone try
    again at once; a grant makes a lingering phone one unlock, not many."""
    from passbridge.adapters.ble_central import BleUnlockClient, ProximityScanner
    from passbridge.bridge.ble_unlock import BleDoorUnlocker
    from passbridge.bridge.reader_driver import reader_identity
    from passbridge.protocol.aliro_crypto import Interface
    from passbridge.sim.ble_phone import SimulatedBlePhone
    from passbridge.sim.bleak_bumble import BumbleAir

    bumble = BumbleAir()
    identity = reader_identity(air.keystore.reader_key())
    applet = air.radios.phone("alice-phone").applet(identity.public_key, interface=Interface.BLE)
    phone = SimulatedBlePhone(bumble, applet.process, rssi=-90)
    table = air.services.proximity.radio("front")
    scanner = ProximityScanner(table, backend=bumble.scanner_backend)
    client = BleUnlockClient(backend=bumble.client_backend, clock=air.services.clock)
    unlocker = BleDoorUnlocker(air.services.controller, client, identity, air.keystore, "front")
    await phone.start()
    await scanner.start()
    try:

        async def approach(rssi: int) -> object:
            phone.rssi = rssi
            await phone.rotate()
            for _ in range(500):
                sighting = table.seen(phone.adv_id, min_rssi=-127)
                if sighting is not None and sighting.rssi == rssi:
                    return await unlocker.unlock(sighting)
                await asyncio.sleep(0.005)
            raise AssertionError("scanner never heard the phone")

        far = await approach(-90)
        assert getattr(far, "reason", None) is Reason.TOO_FAR
        near = await approach(-50)
        assert getattr(near, "reason", None) is Reason.ACCESS_GRANTED
        lingering = await approach(-50)
        assert lingering is None  # same phone moments later: no second decision
        air.services.clock.advance(31)
        again = await approach(-50)
        assert getattr(again, "reason", None) is Reason.ACCESS_GRANTED
    finally:
        await scanner.stop()
        await phone.close()
        await bumble.close()
