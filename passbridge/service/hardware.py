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
from dataclasses import dataclass
from typing import Any

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from passbridge.adapters.ble_central import BleUnlockClient, ProximityScanner
from passbridge.adapters.nfc_reader import NfcReader, ReaderUnavailable, TapOutcome
from passbridge.bridge.ble_unlock import BleDoorUnlocker
from passbridge.bridge.nfc_tap import (
    AliroTapHandler,
    NfcDoorDecider,
    TapResult,
    report_exchange,
)
from passbridge.core.model import Side
from passbridge.service.runtime import Services
from passbridge.service.storage import StartupError

log = logging.getLogger(__name__)

APPROACH_POLL_SECONDS = 0.25
# A phone that was just decided (denied, or a link failure) is not tried
# again for this long: the audit log records attempts, not polls.
RETRY_AFTER_SECONDS = 10.0


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
    """A Radio: one nfcpy reader polling for phones at one door side."""

    def __init__(self, services: Services, placement: Placement) -> None:
        self._services = services
        self.placement = placement
        self._reader: NfcReader[TapResult] | None = None

    async def start(self) -> None:
        services, place = self._services, self.placement
        identity = services.keystore.reader_identity()
        reader: NfcReader[TapResult] = NfcReader(
            place.device,
            lambda: AliroTapHandler(identity, services.keystore),
            decider=NfcDoorDecider(services.controller, place.door, place.side),
            on_tap=self._tapped,
        )
        try:
            await reader.start()
        except ReaderUnavailable as error:
            raise StartupError(str(error)) from None
        self._reader = reader
        log.info("NFC reader %s at %s/%s", place.device, place.door, place.side.value)

    async def _tapped(self, outcome: TapOutcome[TapResult]) -> None:
        if outcome.error is not None:
            log.info("NFC tap at %s ended early: %s", self.placement.door, outcome.error)
        report_exchange(outcome.result, self.placement.door, self.placement.side,
                        self._services.metrics)

    async def stop(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None


class BleDoorRadio:
    """A Radio: a BLE scanner feeding proximity, and Bluetooth unlock at one door side."""

    def __init__(
        self,
        services: Services,
        placement: Placement,
        *,
        scanner_backend: type[BaseBleakScanner] | None = None,
        client_backend: type[BaseBleakClient] | None = None,
    ) -> None:
        self._services = services
        self.placement = placement
        scanner_kwargs: dict[str, Any] = {}
        if scanner_backend is None:
            scanner_kwargs["bluez"] = {"adapter": placement.device}
        # This adapter's own table: what it hears is evidence at its door side only.
        self.table = services.proximity.radio(placement.door, placement.side)
        self._scanner = ProximityScanner(self.table, backend=scanner_backend, **scanner_kwargs)
        self._client = BleUnlockClient(backend=client_backend, clock=services.clock)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self._scanner.start()
        except Exception as error:  # noqa: BLE001 - bleak raises many kinds; one line for the operator
            raise StartupError(
                f"--ble {self.placement.device}: cannot scan: {type(error).__name__}: {error}"
            ) from None
        self._task = asyncio.create_task(self._approaches(), name="ble-approaches")

    async def _approaches(self) -> None:
        """Unlock for phones that come close; the client's cooldown makes a
        lingering phone one unlock, not one per poll."""
        services, place = self._services, self.placement
        door = services.core.door(place.door)
        unlocker = BleDoorUnlocker(
            services.controller,
            self._client,
            services.keystore.reader_identity(),
            services.keystore,
            place.door,
            place.side,
        )
        tried: dict[bytes, float] = {}
        while True:
            await asyncio.sleep(APPROACH_POLL_SECONDS)
            now = services.clock.elapsed()
            for adv_id in [a for a, until in tried.items() if until <= now]:
                del tried[adv_id]
            for sighting in self.table.strong(door.ble_rssi_min):
                if sighting.adv_id in tried or self._client.cooldown.active(
                    ("adv", sighting.adv_id)
                ):
                    continue
                tried[sighting.adv_id] = now + RETRY_AFTER_SECONDS
                try:
                    await unlocker.unlock(sighting)
                except Exception:  # noqa: BLE001 - one phone's failure must not stop the reader
                    log.exception("Bluetooth unlock at %s failed", place.door)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._scanner.stop()
