"""Real radios for ``passbridge serve``: an nfcpy reader or a Bluetooth
adapter named on the command line, each at one door side.

``--nfc DEVICE=DOOR[:SIDE]`` (``usb:054c:06c3=front``, ``tty:USB0=lab:out``,
or nfcpy's ``udp:127.0.0.1:PORT=front`` for a card emulated elsewhere) runs a
continuous nfcpy reader loop whose taps go through the bridge to the core.
``--ble ADAPTER=DOOR[:SIDE]`` (``hci0=front``) scans with bleak's default
backend, feeds its own proximity table (Nearby evidence at that door side
only), and makes a Bluetooth unlock attempt at any phone heard at or above
the door's ``ble_rssi_min``. The BLE client and scanner take bleak backend classes,
so tests run the same loop over the bumble backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from passbridge.adapters.ble_central import BleUnlockClient, ProximityScanner
from passbridge.adapters.ble_settings import DEFAULT_BLE_SETTINGS, BleSettings
from passbridge.adapters.nfc_reader import (
    DEFAULT_FIELD_HOLD,
    DEFAULT_FWI_MAX,
    FieldHeld,
    NfcReader,
    ReaderUnavailable,
    TapOutcome,
)
from passbridge.bridge.ble_approach import BleApproachLoop
from passbridge.bridge.ble_unlock import BleDoorUnlocker
from passbridge.bridge.fast_keys import DoorPhones, FastKeyOrder
from passbridge.bridge.flood import FloodGate, FloodSettings, TokenBucket
from passbridge.bridge.nfc_tap import (
    AliroTapHandler,
    NfcDoorDecider,
    TapResult,
    report_exchange,
)
from passbridge.bridge.reader_driver import reader_identity
from passbridge.core.model import Side
from passbridge.service.runtime import Services
from passbridge.service.storage import StartupError

log = logging.getLogger(__name__)

FIELD_HELD = "nfc_field_held"
"""The FloodGate kind (and ``device`` event) for a card overstaying in the field."""
HEALTH_MEMORY_SECONDS = 30.0
"""A held field keeps /healthz degraded this long after it was last seen."""
SUMMARY_TICK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class NfcSettings:
    """``serve`` options for production NFC readers (documented in docs/decisions.md)."""

    field_hold: float = DEFAULT_FIELD_HOLD
    """After a tap in which no phone authenticated (a stranger, a hostile card)."""
    phone_field_hold: float = 5.0
    """After a phone authenticated: a phone left at the reader a little longer
    is still one tap (one decision), not one per ``field_hold``."""
    fwi_max: int = DEFAULT_FWI_MAX
    flood: FloodSettings = field(default_factory=FloodSettings)


@dataclass(frozen=True, slots=True)
class Placement:
    """Which device serves which door side, from ``DEVICE=DOOR[:SIDE]``."""

    device: str
    door: str
    side: Side

    @classmethod
    def parse(cls, option: str, text: str, services: Services) -> Placement:
        device, sep, where = text.rpartition("=")
        if not sep or not device or not where:
            raise StartupError(f"{option} {text}: expected DEVICE=DOOR or DEVICE=DOOR:SIDE")
        door, _, side = where.partition(":")
        if door not in services.site.doors:
            raise StartupError(f"{option} {text}: no door {door!r} on site {services.site.id}")
        if side not in ("", "in", "out"):
            raise StartupError(f"{option} {text}: side must be 'in' or 'out'")
        return cls(device, door, Side(side or "in"))


class NfcDoorReader:
    """A Radio: one nfcpy reader polling for phones at one door side.

    Hostile cards are bounded here: a card may stay in the field
    ``field_hold`` seconds after its tap (then the reader polls again, and
    the held field is a ``device`` event, a metric and a degraded /healthz
    detail), failed authentications are paced by a token bucket, and
    unauthenticated denials are audited once per burst and summarised.
    """

    def __init__(self, services: Services, placement: Placement,
                 settings: NfcSettings | None = None) -> None:
        self._services = services
        self.placement = placement
        self.settings = settings or NfcSettings()
        self._reader: NfcReader[TapResult] | None = None
        where = {"radio": "nfc", "door": placement.door, "side": placement.side.value,
                 "device": placement.device}
        self._where = where
        self.gate = FloodGate(where, services.clock, self.settings.flood,
                              on_suppressed=self._suppressed)
        flood = self.settings.flood
        self._bucket = TokenBucket(flood.auth_rate, flood.auth_burst, services.clock)
        self._decider = NfcDoorDecider(services.controller, placement.door, placement.side,
                                       gate=self.gate)
        self._held_last: float | None = None
        self._summaries: asyncio.Task[None] | None = None

    @property
    def health_name(self) -> str:
        return f"nfc {self.placement.device} at {self.placement.door}/{self.placement.side.value}"

    async def start(self) -> None:
        services, place = self._services, self.placement
        identity = reader_identity(services.keystore.reader_key())
        keys = FastKeyOrder(services.keystore, DoorPhones(lambda: services.core.site, place.door))
        reader: NfcReader[TapResult] = NfcReader(
            place.device,
            lambda: AliroTapHandler(identity, keys, on_authenticated=keys.authenticated),
            decider=self._decider,
            on_tap=self._tapped,
            field_hold=self.settings.field_hold,
            fwi_max=self.settings.fwi_max,
            on_field_held=self._field_held,
            pace=self._pace,
            hold_for=self._hold_for,
        )
        try:
            await reader.start()
        except ReaderUnavailable as error:
            raise StartupError(str(error)) from None
        self._reader = reader
        self._summaries = asyncio.create_task(self._write_summaries(), name="nfc-summaries")
        log.info("NFC reader %s at %s/%s", place.device, place.door, place.side.value)

    def _suppressed(self, kind: str) -> None:
        place = self.placement
        self._services.metrics.radio_event("nfc", place.door, place.side.value,
                                           f"{kind}_summarised")

    def _hold_for(self, outcome: TapOutcome[TapResult]) -> float:
        """Reader thread: how long this tap's card may stay in the field."""
        result = outcome.result
        if result is not None and result.request.credential_id is not None:
            return self.settings.phone_field_hold
        return self.settings.field_hold

    def _pace(self, outcome: TapOutcome[TapResult]) -> float:
        """Reader thread: a failed authentication spends a token; none left, pause."""
        result = outcome.result
        if result is not None and result.request.credential_id is not None:
            return 0.0
        wait = self._bucket.take()
        if wait > 0:
            place = self.placement
            self._services.metrics.radio_event("nfc", place.door, place.side.value,
                                               "auth_paced")
        return wait

    async def _tapped(self, outcome: TapOutcome[TapResult]) -> None:
        if outcome.error is not None:
            log.info("NFC tap at %s ended early: %s", self.placement.door, outcome.error)
        report_exchange(outcome.result, self.placement.door, self.placement.side,
                        self._services.metrics)
        await self._decider.tap_ended(outcome)

    async def _field_held(self, held: FieldHeld) -> None:
        services, place = self._services, self.placement
        self._held_last = services.clock.elapsed()
        services.metrics.radio_event("nfc", place.door, place.side.value, FIELD_HELD)
        if self.gate.admit(FIELD_HELD):
            log.warning("NFC reader %s at %s: a card held the field %.1fs after its tap; "
                        "released", place.device, place.door, held.seconds)
            await services.audit.record_change("device", {
                **self._where, "event": FIELD_HELD, "seconds": round(held.seconds, 3),
                "at": held.at.isoformat()})

    def health(self) -> str | None:
        """A line for /healthz while the field is (or was lately) held; None when fine."""
        held = self._held_last
        if held is None:
            return None
        ago = self._services.clock.elapsed() - held
        if ago > HEALTH_MEMORY_SECONDS:
            return None
        return (f"a card held the field past {self.settings.field_hold:g}s "
                f"({ago:.0f}s ago); phones at this reader wait their turn")

    async def _write_summaries(self) -> None:
        while True:
            await asyncio.sleep(SUMMARY_TICK_SECONDS)
            await self._flush_summaries()

    async def _flush_summaries(self, *, final: bool = False) -> None:
        services, place = self._services, self.placement
        # a summary is one row per burst and period, whatever the flood's size
        for payload in self.gate.summaries(final=final):
            try:
                await services.audit.record_change("device", payload)
            except Exception:  # a summary must not stop the reader
                log.exception("NFC reader %s: cannot write a device summary", place.device)

    async def stop(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None
        if self._summaries is not None:
            self._summaries.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._summaries
            self._summaries = None
            await self._flush_summaries(final=True)


class BleDoorRadio:
    """A Radio: a BLE scanner feeding proximity, and Bluetooth unlock at one door side."""

    def __init__(
        self,
        services: Services,
        placement: Placement,
        *,
        scanner_backend: type[BaseBleakScanner] | None = None,
        client_backend: type[BaseBleakClient] | None = None,
        settings: BleSettings = DEFAULT_BLE_SETTINGS,
    ) -> None:
        self._services = services
        self.placement = placement
        self.settings = settings
        scanner_kwargs: dict[str, Any] = {}
        if scanner_backend is None:
            scanner_kwargs["bluez"] = {"adapter": placement.device}
        # This adapter's own table: what it hears is evidence at its door side only.
        self.table = services.proximity.radio(placement.door, placement.side)
        self._scanner = ProximityScanner(self.table, backend=scanner_backend, **scanner_kwargs)
        self._client = BleUnlockClient(
            backend=client_backend, clock=services.clock, settings=settings
        )
        self.approaches: BleApproachLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self._scanner.start()
        except Exception as error:  # bleak raises many kinds; one line for the operator
            raise StartupError(
                f"--ble {self.placement.device}: cannot scan: {type(error).__name__}: {error}"
            ) from None
        services, place = self._services, self.placement
        core = services.core
        unlocker = BleDoorUnlocker(
            services.controller,
            self._client,
            reader_identity(services.keystore.reader_key()),
            services.keystore,
            place.door,
            place.side,
        )
        # The loop, the client's cooldown and the back-off make a lingering
        # phone one unlock, and a rogue device a bounded, shrinking cost.
        self.approaches = BleApproachLoop(
            unlocker,
            self._client,
            # The door's floor as the site in force says now (a reload may change it).
            lambda: self.table.strong(core.door(place.door).ble_rssi_min),
            services.clock,
            self.settings,
            on_event=lambda event: services.metrics.radio_event(
                "ble", place.door, place.side.value, event
            ),
        )
        self._task = asyncio.create_task(self.approaches.run(), name="ble-approaches")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._scanner.stop()
