"""The OSDP Control Panel adapter against simulated libosdp readers over a pty.

The panel opens the pty by path through pyserial, as it would /dev/ttyUSB0;
the readers are libosdp PDs in this process (sim/osdp_reader.py). Real
secure channel, real frames, real threads: waits are bounded generously
(WAIT), never asserted tighter.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from passbridge.adapters.osdp_panel import (
    CardData,
    KeysPressed,
    LinkChanged,
    LocalStatus,
    OsdpPanel,
    PanelEvent,
    PanelReader,
    PanelUnavailable,
    SecureChannelRefused,
)
from passbridge.protocol.wiegand import encode_card
from passbridge.sim.osdp_reader import SimulatedBus, SimulatedReader

WAIT = 15.0


class Events:
    """What the panel handed to the loop, with a way to wait for one."""

    def __init__(self) -> None:
        self.seen: list[PanelEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: PanelEvent) -> None:
        self.seen.append(event)
        self._changed.set()

    async def wait(self, match: Callable[[PanelEvent], bool], *, after: int = 0) -> PanelEvent:
        async def find() -> PanelEvent:
            while True:
                for event in self.seen[after:]:
                    if match(event):
                        return event
                self._changed.clear()
                await self._changed.wait()
        return await asyncio.wait_for(find(), WAIT)


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[SimulatedBus]:
    bus = SimulatedBus(tmp_path, "osdp-bus")
    yield bus
    bus.close()


@pytest.fixture
def readers() -> Iterator[list[SimulatedReader]]:
    made: list[SimulatedReader] = []
    yield made
    for reader in made:
        reader.stop()


def add_reader(readers: list[SimulatedReader], bus: SimulatedBus, address: int,
               scbk: bytes | None) -> SimulatedReader:
    reader = SimulatedReader(bus, address, scbk)
    readers.append(reader)
    reader.start()
    return reader


@pytest.fixture
async def panel_for(bus: SimulatedBus) -> AsyncIterator[Callable[..., OsdpPanel]]:
    panels: list[OsdpPanel] = []

    def make(readers: list[PanelReader], events: Events, **options: object) -> OsdpPanel:
        panel = OsdpPanel(str(bus.path), readers, events, **options)  # type: ignore[arg-type]
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        await panel.stop()


def online(address: int) -> Callable[[PanelEvent], bool]:
    return lambda e: isinstance(e, LinkChanged) and e.address == address and e.online


async def test_secure_channel_card_keys_status_and_led(
    bus: SimulatedBus, readers: list[SimulatedReader], panel_for: Callable[..., OsdpPanel]
) -> None:
    key = secrets.token_bytes(16)
    reader = add_reader(readers, bus, 1, key)
    events = Events()
    panel = panel_for([PanelReader(1, key)], events)
    await panel.start()
    up = await events.wait(online(1))
    assert isinstance(up, LinkChanged) and up.secure
    assert panel.is_online(1) and panel.is_secure(1) and reader.secure

    reader.present_card(10001, "h10301", facility=7)
    card = await events.wait(lambda e: isinstance(e, CardData))
    assert isinstance(card, CardData) and card.address == 1
    expected = encode_card(10001, "h10301", facility=7)
    assert card.fields["length"] == 26 and card.fields["data"] == expected.data

    reader.type_keys("2468#")
    keys = await events.wait(lambda e: isinstance(e, KeysPressed))
    assert isinstance(keys, KeysPressed) and keys.keys == b"2468#"

    reader.report_status(tamper=True)
    status = await events.wait(lambda e: isinstance(e, LocalStatus))
    assert status == LocalStatus(1, tamper=True, power_failure=False)

    class Green:
        def osdp_fields(self) -> dict[str, int | bool]:
            return {"reader": 0, "led_number": 0, "temporary": True, "control_code": 2,
                    "on_color": 2, "off_color": 0, "on_count": 1, "off_count": 0,
                    "timer_count": 30}

    assert panel.submit_led(1, Green())
    led = await reader.next_command("led")
    assert led.fields["on_color"] == 2 and led.fields["timer_count"] == 30
    age = panel.last_reply_age(1)
    assert age is not None and age < WAIT


async def test_a_wrong_key_is_refused_and_reported(
    bus: SimulatedBus, readers: list[SimulatedReader], panel_for: Callable[..., OsdpPanel]
) -> None:
    add_reader(readers, bus, 3, secrets.token_bytes(16))
    events = Events()
    panel = panel_for([PanelReader(3, secrets.token_bytes(16))], events)
    await panel.start()
    refused = await events.wait(lambda e: isinstance(e, SecureChannelRefused))
    assert refused == SecureChannelRefused(3)
    assert not panel.is_online(3)
    assert not any(isinstance(e, LinkChanged) and e.online for e in events.seen)


@pytest.mark.slow  # real time on the OSDP link (seconds)
async def test_several_readers_on_one_bus(
    bus: SimulatedBus, readers: list[SimulatedReader], panel_for: Callable[..., OsdpPanel]
) -> None:
    keys = {address: secrets.token_bytes(16) for address in (1, 2, 5)}
    sims = {a: add_reader(readers, bus, a, k) for a, k in keys.items()}
    events = Events()
    panel = panel_for([PanelReader(a, k) for a, k in keys.items()], events)
    await panel.start()
    for address in keys:
        await events.wait(online(address))
    sims[5].present_card(42, "raw", )
    card = await events.wait(lambda e: isinstance(e, CardData))
    assert isinstance(card, CardData) and card.address == 5


@pytest.mark.slow  # real time on the OSDP link (seconds)
async def test_an_unplugged_reader_is_picked_up_again_without_a_restart(
    bus: SimulatedBus, readers: list[SimulatedReader], panel_for: Callable[..., OsdpPanel]
) -> None:
    key = secrets.token_bytes(16)
    reader = add_reader(readers, bus, 9, key)
    events = Events()
    panel = panel_for([PanelReader(9, key)], events)
    await panel.start()
    await events.wait(online(9))
    bus.unplug()
    mark = len(events.seen)
    await events.wait(lambda e: isinstance(e, LinkChanged) and not e.online, after=mark)
    assert not panel.is_online(9)
    bus.replug()
    mark = len(events.seen)
    back = await events.wait(online(9), after=mark)
    assert isinstance(back, LinkChanged) and back.secure
    reader.type_keys("1#")
    await events.wait(lambda e: isinstance(e, KeysPressed), after=mark)


@pytest.mark.slow  # waits out the panel's first probe of an offline reader (2 s)
async def test_a_reader_powered_off_on_a_live_bus_is_probed_again(
    bus: SimulatedBus, readers: list[SimulatedReader], panel_for: Callable[..., OsdpPanel]
) -> None:
    """The bus stays (an RS-485 line with other readers on it); the reader goes
    silent and comes back: libosdp alone would wait 300 s, the panel probes."""
    key = secrets.token_bytes(16)
    first = add_reader(readers, bus, 6, key)
    events = Events()
    panel = panel_for([PanelReader(6, key)], events)
    await panel.start()
    await events.wait(online(6))
    first.stop()
    mark = len(events.seen)
    await events.wait(lambda e: isinstance(e, LinkChanged) and not e.online, after=mark)
    add_reader(readers, bus, 6, key)  # powered on again
    mark = len(events.seen)
    back = await events.wait(online(6), after=mark)
    assert isinstance(back, LinkChanged) and back.secure


async def test_a_missing_device_fails_the_start_with_its_name(tmp_path: Path) -> None:
    panel = OsdpPanel(str(tmp_path / "nope"), [PanelReader(0, bytes(16))], lambda e: None)
    with pytest.raises(PanelUnavailable, match="nope"):
        await panel.start()
    await panel.stop()


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="address"):
        PanelReader(127, bytes(16))
    with pytest.raises(ValueError, match="SCBK"):
        PanelReader(1, bytes(8))
    with pytest.raises(ValueError, match="baud"):
        OsdpPanel("/dev/null", [PanelReader(1, bytes(16))], lambda e: None, baud=1234)
    with pytest.raises(ValueError, match="two readers"):
        OsdpPanel("/dev/null", [PanelReader(1, bytes(16)), PanelReader(1, bytes(16))],
                  lambda e: None)


def test_a_simulated_reader_reads_the_bus_one_frame_at_a_time() -> None:
    """Two polls back to back on the bus reach a reader as two reads: libosdp's
    reader drops what follows a frame for another address in the same read,
    and the poll for it went unanswered (a 200 ms wait and a probe each time)."""
    from passbridge.sim.osdp_reader import _first_frame

    poll_1 = bytes([0xFF, 0x53, 0x01, 0x08, 0x00, 0x04, 0x60, 0xAA, 0xAB])  # mark, 8-byte frame
    poll_2 = bytes([0x53, 0x02, 0x08, 0x00, 0x05, 0x60, 0xBB, 0xCC])
    assert _first_frame(bytearray(poll_1 + poll_2)) == len(poll_1)
    assert _first_frame(bytearray(poll_2)) == len(poll_2)
    assert _first_frame(bytearray(poll_1[:4])) == 4  # the header is not all there yet
    assert _first_frame(bytearray(b"\x00\x01")) == 2  # no frame: hand it over as it is
