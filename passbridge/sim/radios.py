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
    ProximityScanner,
    ProximityTable,
    Sighting,
)
from passbridge.adapters.keystore import KeyStore
from passbridge.adapters.nfc_reader import NfcReader
from passbridge.bridge.ble_unlock import BleDoorUnlocker
from passbridge.bridge.nfc_tap import (
    AliroTapHandler,
    ExchangeRefusals,
    NfcDoorDecider,
    TapResult,
    report_exchange,
)
from passbridge.clock import Clock
from passbridge.controller import DoorController
from passbridge.core.decision import Decision
from passbridge.core.model import Factor, Reason, Side
from passbridge.protocol.aliro_crypto import Interface
from passbridge.protocol.ble_advert import format_adv_id
from passbridge.sim.ble_phone import SimulatedBlePhone
from passbridge.sim.bleak_bumble import BumbleAir
from passbridge.sim.nfc_card import SimulatedCard
from passbridge.sim.phone import SimulatedPhone

TAP_TIMEOUT = 10.0
SIGHTING_TIMEOUT = 5.0  # real seconds for the scanner to hear a fresh advertisement


class SimulationError(RuntimeError):
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
        proximity: ProximityTable,
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
        self._scanner: ProximityScanner | None = None
        self._ble_phones: dict[str, SimulatedBlePhone] = {}
        self._lock = asyncio.Lock()

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
        identity = self._keystore.reader_identity()
        applet = self.phone(phone_id).applet(identity.public_key)
        decider = NfcDoorDecider(self._controller, door, side)
        with SimulatedCard(applet.process) as card:
            reader: NfcReader[TapResult] = NfcReader(
                card.device,
                lambda: AliroTapHandler(identity, self._keystore),
                decider=decider,
            )
            async with reader:
                outcome = await reader.tap_once(TAP_TIMEOUT)
        report_exchange(outcome.result, door, side, self._refusals)
        if outcome.result is not None and outcome.result.decision is not None:
            return NfcTapReport(outcome.result.decision, applet.last_reader_status,
                                outcome.result.phone_refusal)
        detail = f"NFC tap failed: {outcome.error}" if outcome.error else "NFC tap failed"
        decision = await self._controller.bridge_failure(
            door, side, Factor.NFC, Reason.UNKNOWN_CREDENTIAL, detail
        )
        return NfcTapReport(decision, applet.last_reader_status)

    # --- BLE ---------------------------------------------------------------
    async def advertise(self, phone_id: str, rssi: int | None) -> str:
        """The phone advertises a fresh rotating id at ``rssi`` (None: it is
        not seen at all) and the bridge's scanner hears it. Returns the id
        the app would put in a nearby request."""
        async with self._lock:
            ble_phone = await self._ble_phone(phone_id)
            # Each step is a fresh advertisement: silence, a new id heard
            # only at the new strength (never the old id's best RSSI).
            if ble_phone.advertising:
                await ble_phone.stop_advertising()
            if rssi is not None:
                ble_phone.rssi = rssi
            await ble_phone.rotate()
            if rssi is not None:
                await ble_phone.start_advertising()
                await self._heard(ble_phone.adv_id)
            return format_adv_id(ble_phone.adv_id)

    async def ble_unlock(
        self, phone_id: str, door: str, side: Side = Side.IN, rssi: int = -50
    ) -> Decision:
        """The phone approaches the door's Bluetooth reader at ``rssi``."""
        self._controller.core.door(door)
        adv_hex = await self.advertise(phone_id, rssi)
        ble_phone = self._ble_phones[phone_id]
        sighting = self._proximity.seen(ble_phone.adv_id, min_rssi=-127)
        if sighting is None:
            raise SimulationError(f"the scanner lost {phone_id} (advertisement {adv_hex})")
        unlocker = BleDoorUnlocker(
            self._controller,
            self._ble_client(),
            self._keystore.reader_identity(),
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
        identity = self._keystore.reader_identity()
        applet = self.phone(phone_id).applet(identity.public_key, interface=Interface.BLE)
        ble_phone = SimulatedBlePhone(air, applet.process)
        await ble_phone.start()
        self._ble_phones[phone_id] = ble_phone
        return ble_phone

    async def _air_up(self) -> BumbleAir:
        if self._air is None:
            self._air = BumbleAir()
            self._scanner = ProximityScanner(self._proximity, backend=self._air.scanner_backend)
            await self._scanner.start()
        return self._air

    async def _heard(self, adv_id: bytes) -> Sighting:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SIGHTING_TIMEOUT
        while loop.time() < deadline:
            sighting = self._proximity.seen(adv_id, min_rssi=-127)
            if sighting is not None:
                return sighting
            await asyncio.sleep(0.005)
        raise SimulationError("the bridge's scanner did not hear the phone's advertisement")

    async def close(self) -> None:
        for ble_phone in self._ble_phones.values():
            await ble_phone.close()
        self._ble_phones.clear()
        if self._scanner is not None:
            await self._scanner.stop()
            self._scanner = None
        if self._air is not None:
            await self._air.close()
            self._air = None
