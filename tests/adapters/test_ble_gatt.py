"""The BLE edge through bleak's own BleakScanner/BleakClient API.

bleak runs on the bumble-backed backend of passbridge.sim.bleak_bumble: real
HCI/L2CAP/ATT/GATT in process, against simulated phones that are bumble GATT
servers. Deadlines below only bound waiting; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from passbridge.adapters.ble_central import (
    BleLink,
    BleUnlockClient,
    BleUnlockError,
    ProximityScanner,
    ProximityTable,
)
from passbridge.adapters.ble_settings import BleSettings
from passbridge.bridge.ble_unlock import BleAuthOutcome, drive_reader
from passbridge.bridge.reader_driver import InMemoryCredentials, new_transaction
from passbridge.clock import ManualClock
from passbridge.protocol.aliro_crypto import Interface, generate_ephemeral
from passbridge.protocol.aliro_phone import PhoneApplet, PhoneMisbehaviour
from passbridge.protocol.aliro_reader import (
    Authenticated,
    ReaderIdentity,
)
from passbridge.protocol.ble_advert import adv_id_from_service_data
from passbridge.protocol.ble_framing import SERVICE_UUID
from passbridge.protocol.exchange_status import ReaderStatus
from passbridge.sim.ble_phone import Fault, SimulatedBlePhone
from passbridge.sim.bleak_bumble import BumbleAir


def echo(message: bytes) -> bytes:
    return message[::-1] * 3


async def eventually(predicate: Callable[[], bool], deadline: float = 3.0) -> None:
    async with asyncio.timeout(deadline):
        while not predicate():
            await asyncio.sleep(0.005)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2027, 3, 1, 9, 0, tzinfo=UTC))


class Air:
    def __init__(self, mtu: int = 247) -> None:
        self.air = BumbleAir(mtu=mtu)
        self.phones: list[SimulatedBlePhone] = []

    async def phone(
        self, process: Callable[[bytes], bytes] = echo, **kw: object
    ) -> SimulatedBlePhone:
        phone = SimulatedBlePhone(self.air, process, **kw)  # type: ignore[arg-type]
        await phone.start()
        self.phones.append(phone)
        return phone

    def client(self, **kw: object) -> BleUnlockClient:
        options: dict[str, object] = {
            "connect_timeout": 0.5, "message_timeout": 0.5, "session_timeout": 5.0
        }
        options.update(kw)
        settings = BleSettings(**options)  # type: ignore[arg-type]
        return BleUnlockClient(backend=self.air.client_backend, settings=settings)


@pytest.fixture
async def sim() -> AsyncIterator[Air]:
    air = Air()
    yield air
    for phone in air.phones:
        await phone.close()
    await air.air.close()


@pytest.fixture
async def sim23() -> AsyncIterator[Air]:
    air = Air(mtu=23)
    yield air
    for phone in air.phones:
        await phone.close()
    await air.air.close()


async def exchange_all(link: BleLink, messages: list[bytes]) -> list[bytes]:
    return [await link.exchange(m) for m in messages]


# --------------------------------------------------------------------------- plain bleak


async def test_bleak_api_finds_phone_and_talks_gatt(sim: Air) -> None:
    phone = await sim.phone(rssi=-61)
    found: asyncio.Future[tuple[BLEDevice, AdvertisementData]] = (
        asyncio.get_running_loop().create_future()
    )

    def seen(device: BLEDevice, adv: AdvertisementData) -> None:
        if not found.done():
            found.set_result((device, adv))

    async with BleakScanner(seen, service_uuids=[SERVICE_UUID], backend=sim.air.scanner_backend):
        device, adv = await asyncio.wait_for(found, 3)
    assert adv_id_from_service_data(adv.service_data) == phone.adv_id
    assert adv.rssi == -61 and SERVICE_UUID in adv.service_uuids
    async with BleakClient(device, backend=sim.air.client_backend, timeout=2) as client:
        service = client.services.get_service(SERVICE_UUID)
        assert service is not None
        assert {c.uuid for c in service.characteristics} >= {
            "bc6799d5-9dc9-4bd4-b431-6ff52cb0666c", "bc6799d5-9dc9-4bd4-b431-6ff52cb0666d"}
        assert phone.open_connections == 1
    await eventually(lambda: phone.open_connections == 0)


async def test_scanner_filter_drops_other_services(sim: Air) -> None:
    await sim.phone()
    seen: list[AdvertisementData] = []
    other = "0000180d-0000-1000-8000-00805f9b34fb"
    scanner = BleakScanner(lambda d, a: seen.append(a), service_uuids=[other],
                           backend=sim.air.scanner_backend)
    control: list[AdvertisementData] = []
    async with BleakScanner(lambda d, a: control.append(a), service_uuids=[SERVICE_UUID],
                            backend=sim.air.scanner_backend):
        async with scanner:
            await eventually(lambda: len(control) >= 4)
    assert seen == []


# --------------------------------------------------------------------------- proximity


async def test_rssi_set_by_sim_reaches_table(sim: Air, clock: ManualClock) -> None:
    near = await sim.phone(rssi=-58)
    far = await sim.phone(rssi=-88)
    table = ProximityTable(clock)
    async with ProximityScanner(table, backend=sim.air.scanner_backend):
        await eventually(lambda: table.seen(near.adv_id) is not None
                         and table.seen(far.adv_id, min_rssi=-127) is not None)
        sighting = table.seen(near.adv_id)
        assert sighting is not None and sighting.rssi == -58
        assert sighting.address == near.address and sighting.device is not None
        assert table.seen(far.adv_id) is None  # below -80: not nearby
        assert table.seen(far.adv_id, min_rssi=-127).rssi == -88  # type: ignore[union-attr]
        near.rssi = -83  # walks away
        clock.advance(10.5)
        assert table.seen(near.adv_id) is None  # only old strong sightings: aged out
        await eventually(lambda: table.seen(near.adv_id, min_rssi=-127) is not None)
        assert table.seen(near.adv_id, min_rssi=-127).rssi == -83  # type: ignore[union-attr]


async def test_stopped_advertising_is_not_found(sim: Air, clock: ManualClock) -> None:
    quiet = await sim.phone()
    control = await sim.phone()
    await quiet.stop_advertising()
    await asyncio.sleep(0)  # let any advert already on the air land before we listen
    table = ProximityTable(clock)
    async with ProximityScanner(table, backend=sim.air.scanner_backend) as scanner:
        await eventually(lambda: scanner.observed >= 10)  # control heard many times over
    assert table.seen(control.adv_id) is not None
    assert table.seen(quiet.adv_id, min_rssi=-127) is None
    with pytest.raises(BleUnlockError) as err:
        await sim.client(connect_timeout=0.2).run(quiet.address, lambda link: link.exchange(b"x"))
    assert err.value.reason == "connect_failed"
    assert quiet.connections_made == 0


async def test_rotated_id_and_address(sim: Air, clock: ManualClock) -> None:
    phone = await sim.phone()
    old_id, old_address = phone.adv_id, phone.address
    table = ProximityTable(clock)
    async with ProximityScanner(table, backend=sim.air.scanner_backend):
        await eventually(lambda: table.seen(old_id) is not None)
        new_id = await phone.rotate()
        assert new_id != old_id and phone.address != old_address
        await eventually(lambda: table.seen(new_id) is not None)
        clock.advance(10.5)
        await eventually(lambda: table.seen(new_id) is not None)
        assert table.seen(old_id) is None  # the old id is never heard again
    sighting = table.seen(new_id)
    assert sighting is not None and sighting.address == phone.address
    answer = await sim.client().run(sighting.device or sighting.address,
                                    lambda link: link.exchange(b"\x01\x02"))
    assert answer == b"\x02\x01" * 3


# --------------------------------------------------------------------------- unlock sessions


async def test_chunked_exchange_at_minimum_mtu(sim23: Air) -> None:
    phone = await sim23.phone()
    messages = [bytes(range(100)), b"\x00\xa4", bytes(i % 256 for i in range(600))]
    mtus: list[int] = []

    async def handler(link: BleLink) -> list[bytes]:
        mtus.append(link.mtu)
        return await exchange_all(link, messages)

    answers = await sim23.client().run(phone.address, handler)
    assert answers == [echo(m) for m in messages]
    assert mtus == [23]
    assert phone.commands_seen == 3
    await eventually(lambda: phone.open_connections == 0)


async def test_slow_phone_times_out_and_disconnects_cleanly(sim: Air) -> None:
    phone = await sim.phone()
    phone.delay = 1.0
    client = sim.client(message_timeout=0.1, attempts=2)
    with pytest.raises(BleUnlockError) as err:
        await client.run(phone.address, lambda link: link.exchange(b"\x01"))
    assert err.value.reason == "timeout"
    assert phone.connections_made == 2  # one bounded retry, each on a fresh link
    await eventually(lambda: phone.open_connections == 0)
    phone.delay = 0.0
    assert await client.run(phone.address, lambda link: link.exchange(b"\x01")) == b"\x01" * 3


async def test_silent_phone_session_deadline(sim: Air) -> None:
    phone = await sim.phone()
    phone.fault = Fault.SILENT
    client = sim.client(message_timeout=5.0, session_timeout=0.3, attempts=3)
    with pytest.raises(BleUnlockError) as err:
        await client.run(phone.address, lambda link: link.exchange(b"\x01"))
    assert err.value.reason == "timeout"
    await eventually(lambda: phone.open_connections == 0)


async def test_garbled_frames_are_a_protocol_error_not_retried(sim: Air) -> None:
    phone = await sim.phone()
    phone.fault = Fault.GARBLED
    with pytest.raises(BleUnlockError) as err:
        await sim.client(attempts=3).run(phone.address, lambda link: link.exchange(b"\x01"))
    assert err.value.reason == "protocol"
    assert phone.connections_made == 1
    await eventually(lambda: phone.open_connections == 0)


async def test_dropped_link_fails_then_next_attempt_works(sim: Air) -> None:
    phone = await sim.phone()
    phone.fault = Fault.DROP
    phone.fault_from = 2  # answers the first command, drops on the second
    client = sim.client(attempts=1)

    async def two(link: BleLink) -> list[bytes]:
        return await exchange_all(link, [b"\x01", b"\x02"])

    with pytest.raises(BleUnlockError) as err:
        await client.run(phone.address, two)
    assert err.value.reason == "link_lost"
    await eventually(lambda: phone.open_connections == 0)
    phone.fault = Fault.NONE
    assert await client.run(phone.address, two) == [b"\x01" * 3, b"\x02" * 3]


async def test_dropped_link_is_retried_on_a_fresh_connection(sim: Air) -> None:
    phone = await sim.phone()
    phone.fault = Fault.DROP
    attempts: list[int] = []

    async def handler(link: BleLink) -> bytes:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 2:
            phone.fault = Fault.NONE  # the radio glitch has passed
        return await link.exchange(b"\x07")

    assert await sim.client(attempts=2).run(phone.address, handler) == b"\x07" * 3
    assert attempts == [1, 2] and phone.connections_made == 2
    await eventually(lambda: phone.open_connections == 0)


# --------------------------------------------------------------------------- Aliro over BLE


class Site:
    def __init__(self) -> None:
        self.identity = ReaderIdentity(generate_ephemeral(), b"G" * 16, b"S" * 16)
        self.credentials = InMemoryCredentials()
        self.phone_key = generate_ephemeral()
        self.applet = PhoneApplet(self.phone_key, self.identity.public_key,
                                  interface=Interface.BLE)
        self.credentials.enrol("cred-7", self.applet.credential_public_key)
        self.decided: list[str] = []

    async def decide(self, auth: Authenticated) -> tuple[bool, int]:
        self.decided.append(auth.credential_id)
        return True, int(ReaderStatus.STATE_UNSECURED)

    def handler(self, interface: Interface = Interface.BLE) -> Callable[[BleLink], object]:
        async def run(link: BleLink) -> BleAuthOutcome:
            transaction = new_transaction(self.identity, interface=interface)
            return await drive_reader(link, transaction, self.credentials, self.decide)
        return run


async def test_aliro_authentication_over_gatt(sim23: Air) -> None:
    site = Site()
    phone = await sim23.phone(site.applet.process)
    client = sim23.client()
    outcome = await client.run(phone.address, site.handler(), adv_id=phone.adv_id)  # type: ignore[arg-type]
    assert isinstance(outcome, BleAuthOutcome)
    assert outcome.authenticated is not None and outcome.authenticated.credential_id == "cred-7"
    assert outcome.granted and outcome.finished and not outcome.repeat
    assert site.applet.last_door_status is True
    assert site.applet.last_reader_status == ReaderStatus.STATE_UNSECURED
    assert site.decided == ["cred-7"]
    await eventually(lambda: phone.open_connections == 0)

    # one approach is one unlock: the same advertisement is not even reconnected ...
    with pytest.raises(BleUnlockError) as err:
        await client.run(phone.address, site.handler(), adv_id=phone.adv_id)  # type: ignore[arg-type]
    assert err.value.reason == "cooling_down"
    # ... and a rotated id still maps to the credential the phone proved
    await phone.rotate()
    again = await client.run(phone.address, site.handler(), adv_id=phone.adv_id)  # type: ignore[arg-type]
    assert again.authenticated is not None and again.repeat and not again.granted
    assert site.decided == ["cred-7"]
    # Nothing new decided: accepted, door state unknown (a listed success code).
    assert site.applet.last_reader_status == ReaderStatus.STATE_UNKNOWN
    assert again.finished


async def test_nfc_keyed_phone_cannot_authenticate_over_ble(sim: Air) -> None:
    site = Site()
    nfc_applet = PhoneApplet(site.phone_key, site.identity.public_key, interface=Interface.NFC)
    phone = await sim.phone(nfc_applet.process)
    outcome = await sim.client().run(phone.address, site.handler())  # type: ignore[arg-type]
    assert outcome.authenticated is None and not outcome.granted
    assert outcome.failure is not None
    assert site.decided == []


async def test_wrong_answers_never_grant(sim: Air) -> None:
    site = Site()
    bad = PhoneApplet(site.phone_key, site.identity.public_key, interface=Interface.BLE,
                      misbehaviour=PhoneMisbehaviour(bad_signature=True))
    phone = await sim.phone(bad.process)
    outcome = await sim.client().run(phone.address, site.handler())  # type: ignore[arg-type]
    assert outcome.failure is not None and not outcome.granted
    # a byte flipped in transit (well framed) fails the same way
    site2 = Site()
    phone2 = await sim.phone(site2.applet.process)
    phone2.fault = Fault.WRONG
    phone2.fault_from = 3  # the encrypted AUTH1 answer
    outcome2 = await sim.client().run(phone2.address, site2.handler())  # type: ignore[arg-type]
    assert outcome2.failure is not None and not outcome2.granted
    assert site.decided == [] and site2.decided == []
