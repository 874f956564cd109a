"""Simulated wired readers for ``serve --simulate``, ``sim card|pin`` and
``scenario run --via osdp``: one simulated OSDP reader with keypad per door
side that has a reader or a keypad, each on its own pty bus, driven by the
service's real OSDP Control Panel (service.osdp.OsdpBus) exactly as a
``--osdp`` reader is.

Each simulated reader is provisioned with its door side's OSDP key from the
key store (made on first use: a simulator stands in for a reader that was
installed). :class:`WiredDoors` presents a card or types a code at a door
side's simulated reader and waits for the decision it made, for the
``/v1/sim`` routes and the scenario rig.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from passbridge.adapters.keystore import KeyStore, new_osdp_key
from passbridge.bridge.wired_reader import WiredReader
from passbridge.core.decision import Decision
from passbridge.core.model import Side, Site
from passbridge.service.device_keys import device_slots
from passbridge.service.osdp import OsdpBus, OsdpPlacement, buses_for
from passbridge.service.runtime import Services
from passbridge.sim.osdp_reader import SimulatedBus, SimulatedReader
from passbridge.sim.radios import SimulationError

__all__ = ["SIM_OSDP_DIR", "SimulatedWiredReaders", "WiredDoors", "close_wired_doors",
           "reader_sides", "simulated_wired_doors", "wiegand_number"]

log = logging.getLogger(__name__)

SIM_OSDP_DIR = "sim-osdp"
"""Beside the database: the simulated buses' stable paths (symlinks to ptys)."""
SIM_ADDRESS = 0
DECISION_SECONDS = 10.0
"""How long a presented card or typed code may take to become a decision."""
ONLINE_SECONDS = 10.0
"""How long a simulated reader may take to come online before a presentation."""

DoorSide = tuple[str, Side]


def reader_sides(site: Site) -> list[DoorSide]:
    """The door sides that have a wired reader or keypad (one OSDP device each)."""
    return list(dict.fromkeys((door, side) for door, side, _kind in device_slots(site)))


class SimulatedWiredReaders:
    """A Radio: the simulated readers (libosdp PDs) and their pty buses.

    Started before the OsdpBus radios that drive them (their buses must exist
    when the panel opens them) and stopped after them.
    """

    def __init__(self, keystore: KeyStore, folder: Path, sides: Iterable[DoorSide]) -> None:
        self.folder = folder
        self._keys: dict[DoorSide, bytes] = {}
        for door, side in sides:
            key = keystore.osdp_key(door, side)
            if key is None:
                key = keystore.set_osdp_key(door, side, new_osdp_key())
            self._keys[(door, side)] = key.scbk
        self.buses: dict[DoorSide, SimulatedBus] = {}
        self.readers: dict[DoorSide, SimulatedReader] = {}

    def _path(self, door: str, side: Side) -> Path:
        path = self.folder / f"{door}.{side.value}"
        if path.parent != self.folder:
            raise ValueError(f"door {door!r}: does not name a file in {self.folder}")
        return path

    def panel_placements(self) -> list[OsdpPlacement]:
        """Where the service's panels find the simulated readers (one bus each).

        Not named ``placements``: that is a radio's real devices
        (site_reload.PlacesRadios, the panels' OsdpBus), and these are only
        what the panels drive."""
        return [OsdpPlacement(str(self._path(door, side)), SIM_ADDRESS, door, side)
                for door, side in self._keys]

    async def start(self) -> None:
        for (door, side), scbk in self._keys.items():
            path = self._path(door, side)
            bus = SimulatedBus(path.parent, path.name)
            self.buses[(door, side)] = bus
            reader = SimulatedReader(bus, SIM_ADDRESS, scbk)
            reader.start()
            self.readers[(door, side)] = reader
        log.info("simulated wired readers: %d (OSDP over ptys in %s)", len(self.readers),
                 self.folder)

    async def stop(self) -> None:
        for reader in self.readers.values():
            await asyncio.to_thread(reader.stop)
        for bus in self.buses.values():
            bus.close()
        self.readers.clear()
        self.buses.clear()


def wiegand_number(number: str) -> int | None:
    """The card number as a wired reader sends it (decimal digits, no leading
    zeros, at most the 512 bits OSDP carries), or None when it cannot."""
    if not number.isascii() or not number.isdigit() or len(number) > 150:
        return None
    value = int(number)
    return value if str(value) == number and value.bit_length() <= 500 else None


class WiredDoors:
    """Present cards and codes at door sides' simulated readers, through OSDP."""

    def __init__(self, sims: SimulatedWiredReaders, buses: Sequence[OsdpBus]) -> None:
        self.sims = sims
        self.buses = list(buses)
        # One presentation at a time per door side: the answer is that input's decision.
        self._turns: dict[DoorSide, asyncio.Lock] = {}

    def sides(self) -> list[DoorSide]:
        return list(self.sims.readers)

    def has(self, door: str, side: Side) -> bool:
        return (door, side) in self.sims.readers

    def _at(self, door: str, side: Side) -> tuple[SimulatedReader, WiredReader, OsdpBus]:
        reader = self.sims.readers.get((door, side))
        for bus in self.buses:
            wired = bus.wired_reader(door, side)
            if reader is not None and wired is not None:
                return reader, wired, bus
        raise SimulationError(f"door {door!r} side {side.value} has no simulated wired reader")

    async def _online(self, bus: OsdpBus, door: str, side: Side) -> None:
        async with asyncio.timeout(ONLINE_SECONDS):
            while not any(s.online for s in bus.status() if (s.door, s.side) == (door, side)):
                await asyncio.sleep(0.05)

    async def _decided(self, door: str, side: Side, act: str, keys: bytes | None = None,
                       number: int | None = None) -> Decision:
        reader, wired, bus = self._at(door, side)
        async with self._turns.setdefault((door, side), asyncio.Lock()):
            return await self._present(reader, wired, bus, door, side, act, keys, number)

    async def _present(self, reader: SimulatedReader, wired: WiredReader, bus: OsdpBus,
                       door: str, side: Side, act: str, keys: bytes | None,
                       number: int | None) -> Decision:
        try:
            await self._online(bus, door, side)
        except TimeoutError:
            raise SimulationError(f"the simulated reader at {door}/{side.value} did not come "
                                  f"online within {ONLINE_SECONDS:g} s") from None
        future = wired.next_decision()
        try:
            if number is not None:
                reader.present_card(number)
            elif keys is not None:
                reader.type_keys(keys)
            return await asyncio.wait_for(asyncio.shield(future), DECISION_SECONDS)
        except TimeoutError:
            raise SimulationError(f"no decision for the {act} at {door}/{side.value} within "
                                  f"{DECISION_SECONDS:g} s") from None
        finally:
            if not future.done():
                future.cancel()

    async def card(self, door: str, number: str, side: Side) -> Decision:
        """The card ``number`` at the reader, as Wiegand bits (H10301 when it
        fits 16 bits, else raw bits), and the decision the service made."""
        value = wiegand_number(number)
        if value is None:
            raise SimulationError(f"card {number!r}: a wired reader sends a number (digits, "
                                  "no leading zeros)")
        return await self._decided(door, side, "card", number=value)

    async def pin(self, door: str, code: str, side: Side) -> Decision:
        """``code`` and ``#`` typed at the reader's keypad, and the decision."""
        if not code.isdigit():
            raise SimulationError("an entry code is digits")
        return await self._decided(door, side, "entry code", keys=f"{code}#".encode())


async def simulated_wired_doors(services: Services, folder: Path,
                                sides: Iterable[DoorSide] | None = None) -> WiredDoors:
    """Simulated readers at ``sides`` (default: every reader or keypad door side),
    the service's panels for them, started; :meth:`close_wired_doors` ends them.
    The scenario rig's way in (``serve`` puts the same radios on services.radios)."""
    sims = SimulatedWiredReaders(services.keystore, folder,
                                 reader_sides(services.site) if sides is None else sides)
    buses = buses_for(services, sims.panel_placements())
    await sims.start()
    started: list[OsdpBus] = []
    try:
        for bus in buses:
            await bus.start()
            started.append(bus)
    except BaseException:
        for bus in started:
            await bus.stop()
        await sims.stop()
        raise
    return WiredDoors(sims, buses)


async def close_wired_doors(doors: WiredDoors) -> None:
    """Stop the panels, then the simulated readers (each even if another fails)."""
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(doors.sims.stop)
        for bus in doors.buses:
            stack.push_async_callback(bus.stop)
