"""The simulated air around a bridge: phones that tap and advertise, and the
bridge's own production readers pointed at them.

Used by the scenario runner and by ``passbridge serve`` when its radios are
simulated. From the simulated phone onward every byte goes through the
production path: nfcpy's reader code over its udp driver, bleak's API over
the bumble backend, the bridge, the signed token, the core, the audit log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from passbridge.adapters.ble_central import (
    BleUnlockClient,
    ProximityRadios,
    ProximityScanner,
    ProximityTable,
    Sighting,
)
from passbridge.adapters.keystore import KeyStore
from passbridge.adapters.nfc_reader import NfcReader
from passbridge.bridge.ble_unlock import BleDoorUnlocker
from passbridge.bridge.fast_keys import DoorPhones, FastKeyOrder
from passbridge.bridge.nfc_tap import (
    AliroTapHandler,
    ExchangeRefusals,
    NfcDoorDecider,
    TapResult,
    report_exchange,
)
from passbridge.bridge.reader_driver import reader_identity
from passbridge.clock import Clock
from passbridge.controller import DoorController
from passbridge.core.decision import Decision
from passbridge.core.model import Side
from passbridge.errors import PassbridgeError
from passbridge.protocol.aliro_crypto import Interface
from passbridge.protocol.ble_advert import format_adv_id
from passbridge.sim.ble_phone import SimulatedBlePhone
from passbridge.sim.bleak_bumble import BumbleAir
from passbridge.sim.nfc_card import SimulatedCard
from passbridge.sim.phone import SimulatedPhone

TAP_TIMEOUT = 10.0
# The simulated reader's own limits per APDU and per decision. A production
# reader keeps its short per-APDU deadline (it bounds hostile cards); here the
# card is the in-process simulated phone, so its answer is late only when the
# machine is busy, and a scenario's result must not depend on that.
SIM_APDU_TIMEOUT = 4.0
SIM_DECIDE_TIMEOUT = 4.0
SIGHTING_TIMEOUT = 5.0  # real seconds for the scanner to hear a fresh advertisement


class SimulationError(PassbridgeError, RuntimeError):
    """The simulated air could not do what a step asked (not a decision)."""


@dataclass(frozen=True, slots=True)
class NfcTapReport:
    """One simulated tap: the decision, and what the phone was told.

    ``phone_status`` is the EXCHANGE reader status as the phone received it
    (None when no EXCHANGE reached it); ``phone_refusal`` the status word of
    a phone that refused it (None when it accepted, or got nothing).
    """

    decision: Decision
    phone_status: int | None = None
    phone_refusal: int | None = None


class SimulatedRadios:
    def __init__(
        self,
        controller: DoorController,
        keystore: KeyStore,
        clock: Clock,
        proximity: ProximityRadios,
        phones: Mapping[str, SimulatedPhone],
        *,
        refusals: ExchangeRefusals | None = None,
    ) -> None:
        self._controller = controller
        self._refusals = refusals
        self._keystore = keystore
        self._clock = clock
        self._proximity = proximity
        self._phones = phones
        self._air: BumbleAir | None = None
        # One scanner per door radio (door, side), each feeding that radio's table.
        self._scanners: dict[tuple[str, Side], ProximityScanner] = {}
        self._ble_phones: dict[str, SimulatedBlePhone] = {}
        self._beacons: list[SimulatedBlePhone] = []
        self._lock = asyncio.Lock()
        self._fast_keys: dict[str, FastKeyOrder] = {}  # per door, as on a real reader

    def phone(self, phone_id: str) -> SimulatedPhone:
        phone = self._phones.get(phone_id)
        if phone is None:
            raise SimulationError(f"no simulated phone {phone_id!r}")
        return phone

    # --- NFC ---------------------------------------------------------------
    async def nfc_tap(self, phone_id: str, door: str, side: Side = Side.IN) -> Decision:
        """The phone taps the door's reader once."""
        return (await self.nfc_tap_report(phone_id, door, side)).decision

    async def nfc_tap_report(self, phone_id: str, door: str, side: Side = Side.IN
                             ) -> NfcTapReport:
        """The phone taps the door's reader once; the decision and what the phone saw."""
        self._controller.core.door(door)  # UnknownDoor before any radio work
        identity = reader_identity(self._keystore.reader_key())
        applet = self.phone(phone_id).applet(identity.public_key)
        decider = NfcDoorDecider(self._controller, door, side)
        keys = self._fast_keys.get(door)
        if keys is None:
            core = self._controller.core
            keys = self._fast_keys[door] = FastKeyOrder(
                self._keystore, DoorPhones(lambda: core.site, door))
        with SimulatedCard(applet.process) as card:
            reader: NfcReader[TapResult] = NfcReader(
                card.device,
                lambda: AliroTapHandler(identity, keys, on_authenticated=keys.authenticated),
                decider=decider,
                apdu_timeout=SIM_APDU_TIMEOUT,
                decide_timeout=SIM_DECIDE_TIMEOUT,
            )
            async with reader:
                outcome = await reader.tap_once(TAP_TIMEOUT)
        report_exchange(outcome.result, door, side, self._refusals)
        decision = await decider.tap_ended(outcome)
        if decision is None:  # no flood gate here: every tap is decided
            raise SimulationError(f"NFC tap at {door} decided nothing")
        refusal = outcome.result.phone_refusal if outcome.result is not None else None
        return NfcTapReport(decision, applet.last_reader_status, refusal)

    # --- BLE ---------------------------------------------------------------
    async def advertise(
        self, phone_id: str, rssi: int | None, door: str, side: Side = Side.IN
    ) -> str:
        """The phone, near the radio at ``door``/``side``, advertises its
        rotating id of the current slot at ``rssi`` (None: it is not seen
        at all) and that radio's scanner hears it; no other radio does.
        Returns the id the app would put in a nearby request.

        Each step is a new approach: what the radios heard of this phone
        before is forgotten, so a step is heard only at its own strength
        (never an earlier step's best RSSI within the 10 s window)."""
        self._controller.core.door(door)  # UnknownDoor before any radio work
        async with self._lock:
            ble_phone = await self._ble_phone(phone_id)
            table = await self._radio(door, side)
            if ble_phone.advertising:
                await ble_phone.stop_advertising()
            self._proximity.forget(ble_phone.adv_id)
            adv_id = self.phone(phone_id).adv_id_at(
                self._keystore.reader_key().public_key, self._clock.now().timestamp()
            )
            self._proximity.forget(adv_id)
            if rssi is not None:
                ble_phone.rssi = rssi
                ble_phone.place({_radio_name(door, side): rssi})
            await ble_phone.rotate(adv_id)
            if rssi is not None:
                await ble_phone.start_advertising()
                await self._heard(table, adv_id)
            return format_adv_id(adv_id)

    async def beacon(self, adv_id: bytes, door: str, side: Side = Side.IN, rssi: int = -50) -> None:
        """An attacker's device near the radio at ``door``/``side`` advertising
        ``adv_id`` (for example one recorded from a phone earlier); it
        answers no GATT command. Runs until ``close``."""
        self._controller.core.door(door)
        async with self._lock:
            air = await self._air_up()
            table = await self._radio(door, side)
            beacon = SimulatedBlePhone(air, lambda _command: b"", rssi=rssi, adv_id=adv_id)
            beacon.place({_radio_name(door, side): rssi})
            self._beacons.append(beacon)
            await beacon.start()
            await self._heard(table, adv_id)

    async def ble_unlock(
        self, phone_id: str, door: str, side: Side = Side.IN, rssi: int = -50
    ) -> Decision:
        """The phone approaches the door's Bluetooth reader at ``rssi``."""
        adv_hex = await self.advertise(phone_id, rssi, door, side)
        ble_phone = self._ble_phones[phone_id]
        sighting = self._proximity.radio(door, side).seen(ble_phone.adv_id, min_rssi=-127)
        if sighting is None:
            raise SimulationError(f"the scanner lost {phone_id} (advertisement {adv_hex})")
        unlocker = BleDoorUnlocker(
            self._controller,
            self._ble_client(),
            reader_identity(self._keystore.reader_key()),
            self._keystore,
            door,
            side,
        )
        decision = await unlocker.unlock(sighting)
        if decision is None:
            raise SimulationError(f"Bluetooth unlock of {phone_id} at {door} decided nothing")
        return decision

    def _ble_client(self) -> BleUnlockClient:
        """A fresh client per approach: a simulated ``ble`` step is a
        deliberate new approach, so the production cooldown (one lingering
        phone is one unlock) must not swallow it."""
        assert self._air is not None
        return BleUnlockClient(backend=self._air.client_backend, clock=self._clock)

    async def _ble_phone(self, phone_id: str) -> SimulatedBlePhone:
        existing = self._ble_phones.get(phone_id)
        if existing is not None:
            return existing
        air = await self._air_up()
        identity = reader_identity(self._keystore.reader_key())
        applet = self.phone(phone_id).applet(identity.public_key, interface=Interface.BLE)
        ble_phone = SimulatedBlePhone(air, applet.process)
        await ble_phone.start()
        self._ble_phones[phone_id] = ble_phone
        return ble_phone

    async def _air_up(self) -> BumbleAir:
        if self._air is None:
            self._air = BumbleAir()
        return self._air

    async def _radio(self, door: str, side: Side) -> ProximityTable:
        """The door radio at ``door``/``side`` (its scanner started on first use)."""
        table = self._proximity.radio(door, side)
        if (door, side) not in self._scanners:
            air = await self._air_up()
            scanner = ProximityScanner(
                table, backend=air.scanner_backend_at(_radio_name(door, side))
            )
            await scanner.start()
            self._scanners[(door, side)] = scanner
        return table

    async def _heard(self, table: ProximityTable, adv_id: bytes) -> Sighting:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SIGHTING_TIMEOUT
        while loop.time() < deadline:
            sighting = table.seen(adv_id, min_rssi=-127)
            if sighting is not None:
                return sighting
            await asyncio.sleep(0.005)
        raise SimulationError("the bridge's scanner did not hear the phone's advertisement")

    async def close(self) -> None:
        for ble_phone in [*self._ble_phones.values(), *self._beacons]:
            await ble_phone.close()
        self._ble_phones.clear()
        self._beacons.clear()
        for scanner in self._scanners.values():
            await scanner.stop()
        self._scanners.clear()
        if self._air is not None:
            await self._air.close()
            self._air = None


def _radio_name(door: str, side: Side) -> str:
    return f"{door}/{side.value}"
