"""Wired OSDP readers in front of the core: the service's Control Panel
(service/osdp.py) drives simulated libosdp readers over ptys, secure channel
on, and every decision is shown back at the reader (bridge/reader_feedback).

Time in the core is the ManualClock; the OSDP link runs in real time, so
waits are bounded generously (WAIT) and never asserted tighter.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from passbridge.adapters.osdp_panel import LinkChanged
from passbridge.bridge.reader_feedback import feedback_for
from passbridge.clock import ManualClock
from passbridge.core.decision import Decision
from passbridge.core.model import Reason, Result, Side
from passbridge.protocol.wiegand import EncodedCard, encode_card
from passbridge.service.osdp import OsdpBus, OsdpPlacement
from passbridge.service.runtime import Services
from passbridge.service.storage import StartupError
from passbridge.sim.osdp_reader import ReceivedCommand, SimulatedBus, SimulatedReader
from passbridge.sim.wired import WiredDoors, close_wired_doors, simulated_wired_doors
from tests.service_support import metric_sample, services_with_phones

WAIT = 15.0
MONDAY_9 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

SITE = """
site: {id: hq, timezone: UTC}
doors:
  - id: front
    reader: true
    keypad: true
    unlock_seconds: 7
    pin_timeout: 20
    schedule:
      - {days: [mon, tue, wed, thu, fri], start: "07:00", end: "19:00", state: two_factor}
  - id: garage
    reader: true
    unlock_seconds: 4
users:
  - {id: alice, cards: ["10001", "70000"], pin: "2468", doors: [front, garage]}
"""


@pytest.fixture
async def wired(tmp_path: Path) -> AsyncIterator[tuple[Services, ManualClock, WiredDoors]]:
    clock = ManualClock(MONDAY_9)
    services, _keys, _phones = services_with_phones(SITE, clock, {})
    doors = await simulated_wired_doors(services, tmp_path / "osdp")
    try:
        yield services, clock, doors
    finally:
        await close_wired_doors(doors)


def reader(doors: WiredDoors, door: str, side: Side = Side.IN) -> SimulatedReader:
    return doors.sims.readers[(door, side)]


Shown = tuple[Decision, ReceivedCommand, ReceivedCommand]


async def shown(services: Services, sim: SimulatedReader, decide: Awaitable[Decision]) -> Shown:
    """The decision, and the LED and buzzer commands the reader got for it
    (the commands follow the answer by a poll or two: wait for them)."""
    mark = len(sim.commands)
    decision = await decide
    expected = feedback_for(decision, services.core.door(decision.door))

    def matches(fields: dict[str, Any], wanted: dict[str, Any]) -> bool:
        return all(fields.get(k) == v for k, v in wanted.items())

    led = await asyncio.to_thread(
        sim.wait_for, lambda c: c.kind == "led" and matches(c.fields, expected.led.osdp_fields()),
        after=mark, timeout=WAIT)
    buzzer = await asyncio.to_thread(
        sim.wait_for,
        lambda c: c.kind == "buzzer" and matches(c.fields, expected.buzzer.osdp_fields()),
        after=sim.commands.index(led), timeout=WAIT)
    return decision, led, buzzer


async def test_card_then_pin_through_osdp_with_feedback_at_the_reader(
    wired: tuple[Services, ManualClock, WiredDoors]
) -> None:
    services, clock, doors = wired
    front = reader(doors, "front")
    pending, led, beep = await shown(services, front, doors.card("front", "10001", Side.IN))
    assert (pending.result, pending.reason) == (Result.PENDING, Reason.PIN_REQUIRED)
    # Waiting: amber blinking for the door's pin_timeout (20 s = 200 units), one short beep.
    assert led.fields["on_color"] == 3 and led.fields["off_count"] > 0
    assert led.fields["timer_count"] == 200
    assert beep.fields["rep_count"] == 1

    clock.advance(4)
    granted, led, _beep = await shown(services, front, doors.pin("front", "2468", Side.IN))
    assert (granted.result, granted.reason, granted.user) == (
        Result.GRANTED, Reason.TWO_FACTOR_COMPLETE, "alice")
    # The waiting pattern ends: green, steady, for unlock_seconds (7 s).
    assert led.fields["on_color"] == 2 and led.fields["off_count"] == 0
    assert led.fields["timer_count"] == 70


@pytest.mark.slow  # real time on the OSDP link (seconds)
async def test_a_denial_is_red_with_a_double_beep_and_locked_out_is_distinct(
    wired: tuple[Services, ManualClock, WiredDoors]
) -> None:
    services, clock, doors = wired
    front = reader(doors, "front")
    denials: list[Shown] = []
    for attempt in range(5):
        await shown(services, front, doors.card("front", "10001", Side.IN))
        clock.advance(1)
        denials.append(await shown(services, front, doors.pin("front", f"000{attempt}", Side.IN)))
        assert denials[-1][0].reason is Reason.PIN_INCORRECT
        clock.advance(1)
    _, led, beep = denials[0]
    assert led.fields["on_color"] == 1 and led.fields["off_count"] == 0
    assert (beep.fields["rep_count"], beep.fields["off_count"]) == (2, 1)
    locked, led_lock, beep_lock = await shown(services, front,
                                              doors.card("front", "10001", Side.IN))
    assert locked.reason is Reason.LOCKED_OUT
    assert led_lock.fields["on_color"] == 1
    assert (led_lock.fields["on_count"], led_lock.fields["off_count"]) != (
        led.fields["on_count"], led.fields["off_count"])
    assert beep_lock.fields != beep.fields


async def test_a_pending_card_waits_for_pin_timeout_and_a_late_pin_is_refused(
    wired: tuple[Services, ManualClock, WiredDoors]
) -> None:
    services, clock, doors = wired
    front = reader(doors, "front")
    _, waiting, _ = await shown(services, front, doors.card("front", "10001", Side.IN))
    # The reader ends the waiting pattern on its own after pin_timeout ...
    assert waiting.fields["temporary"] and waiting.fields["timer_count"] == 200
    clock.advance(21)
    late, led, _ = await shown(services, front, doors.pin("front", "2468", Side.IN))
    assert late.reason is Reason.PIN_TIMEOUT
    # ... and the late code's denial replaces whatever still shows.
    assert led.fields["on_color"] == 1


@pytest.mark.parametrize(("bits", "why"), [
    (encode_card(10001, "h10301", facility=1), None),
    (EncodedCard(bytes([encode_card(10001, "h10301", facility=1).data[0] ^ 0x40])
                 + encode_card(10001, "h10301", facility=1).data[1:], 26), "parity"),
    (encode_card(10001, "wiegand34", facility=300), None),
    (EncodedCard(encode_card(10001, "wiegand34", facility=300).data[:-1]
                 + bytes([encode_card(10001, "wiegand34", facility=300).data[-1] ^ 0x40]), 34),
     "parity"),
    (encode_card(70000, "raw", bits=40), None),
    (EncodedCard(b"\x01\x02\x03", 20), "garbled"),
])
async def test_card_formats_good_and_bad_end_to_end(
    wired: tuple[Services, ManualClock, WiredDoors], bits: EncodedCard, why: str | None
) -> None:
    services, clock, doors = wired
    garage = reader(doors, "garage")
    _sim, wired_reader, _bus = doors._at("garage", Side.IN)
    await doors._online(_bus, "garage", Side.IN)
    future = wired_reader.next_decision()
    garage.present_bits(bits)
    decision = await asyncio.wait_for(future, WAIT)
    if why is None:
        assert decision.result is Result.GRANTED and decision.user == "alice"
    else:
        assert (decision.result, decision.reason) == (Result.DENIED, Reason.UNKNOWN_CREDENTIAL)
        assert decision.detail is not None and why in decision.detail
    logged = await audit(services, "decision")
    assert logged[-1]["decision_id"] == decision.id


@pytest.mark.slow  # real time on the OSDP link (seconds)
async def test_keypad_buffering_clear_and_inter_key_timeout(
    wired: tuple[Services, ManualClock, WiredDoors]
) -> None:
    services, clock, doors = wired
    front = reader(doors, "front")
    _sim, wired_reader, _bus = doors._at("front", Side.IN)
    await doors.card("front", "10001", Side.IN)
    # Digits over several reports, a clear, then the code: one decision, granted.
    front.type_keys("99")
    front.type_keys("*")
    front.type_keys("24")
    future = wired_reader.next_decision()
    front.type_keys("68#")
    granted = await asyncio.wait_for(future, WAIT)
    assert granted.result is Result.GRANTED
    # Digits gone stale (the keypad's 5 s) are dropped: "24" + pause + "68#" is "68".
    clock.advance(10)
    await doors.card("front", "10001", Side.IN)
    front.type_keys("24")
    async with asyncio.timeout(WAIT):  # the keys reach the reader's buffer before time moves
        while not wired_reader.typing:
            await asyncio.sleep(0.02)
    clock.advance(6)
    future = wired_reader.next_decision()
    front.type_keys("68#")
    stale = await asyncio.wait_for(future, WAIT)
    assert stale.reason is Reason.PIN_INCORRECT
    # Junk from the keypad is an audited denial, never a code.
    future = wired_reader.next_decision()
    front.type_keys(b"12\x01#")
    junk = await asyncio.wait_for(future, WAIT)
    assert (junk.result, junk.reason) == (Result.DENIED, Reason.UNKNOWN_CREDENTIAL)


async def audit(services: Services, kind: str) -> list[dict[str, Any]]:
    return [e for e in await services.audit.store.page(0, 100_000) if e["kind"] == kind]


async def device_records(services: Services) -> list[dict[str, Any]]:
    return [e["payload"] for e in await audit(services, "device")]


async def until(services: Services, check: Callable[[list[dict[str, Any]]], bool]) -> None:
    """Until ``check`` holds for the device records (bounded by WAIT)."""
    async with asyncio.timeout(WAIT):
        while not check(await device_records(services)):
            await asyncio.sleep(0.05)


@pytest.mark.slow  # real time on the OSDP link (seconds)
async def test_supervision_online_offline_tamper_power_and_metrics(
    wired: tuple[Services, ManualClock, WiredDoors]
) -> None:
    services, clock, doors = wired
    await doors.card("garage", "10001", Side.IN)  # both buses up
    await doors.card("front", "10001", Side.IN)
    await until(services, lambda records: sum(r["event"] == "osdp_reader_online"
                                              for r in records) == 2)
    from prometheus_client import generate_latest

    from passbridge.service.metrics import app_registry

    text = generate_latest(app_registry(services.metrics)).decode()
    assert metric_sample(text, "passbridge_osdp_readers_online") == 2
    age = metric_sample(text, "passbridge_osdp_reader_last_reply_seconds",
                        door="garage", side="in")
    assert age is not None and age < WAIT

    garage = reader(doors, "garage")
    garage.report_status(tamper=True, power_failure=True)
    await until(services, lambda records: {"osdp_tamper", "osdp_power_failure"}
                <= {r["event"] for r in records})
    garage.report_status()
    await until(services, lambda records: {"osdp_tamper_cleared", "osdp_power_restored"}
                <= {r["event"] for r in records})

    # Unplugged (the pty closed) and back: offline, then online again, no restart.
    async with services.audit.subscribe() as live:
        doors.sims.buses[("garage", Side.IN)].unplug()
        await until(services, lambda records: any(
            r["event"] == "osdp_reader_offline" and r["door"] == "garage" for r in records))
        streamed = await asyncio.wait_for(live.get(), WAIT)  # the live event stream too
    assert streamed is not None and streamed["kind"] == "device"
    assert streamed["payload"]["event"] == "osdp_reader_offline"
    services.radios.extend(doors.buses)  # as serve has them: /healthz asks them
    assert "garage/in" in services.degraded()[f"osdp {doors.sims.buses[('garage', Side.IN)].path}"]
    doors.sims.buses[("garage", Side.IN)].replug()
    await until(services, lambda records: sum(
        r["event"] == "osdp_reader_online" and r["door"] == "garage" for r in records) == 2)
    decision = await doors.card("garage", "10001", Side.IN)
    assert decision.result is Result.GRANTED
    record = (await device_records(services))[-1]
    assert record["radio"] == "osdp" and record["side"] == "in" and record["at"]


@pytest.mark.slow  # real time on the OSDP link (seconds)
async def test_a_reader_with_the_wrong_key_is_refused_and_reported(tmp_path: Path) -> None:
    clock = ManualClock(MONDAY_9)
    services, keystore, _ = services_with_phones(SITE, clock, {})
    keystore.set_osdp_key("garage", Side.IN, secrets.token_bytes(16))
    bus = SimulatedBus(tmp_path, "bus")
    sim = SimulatedReader(bus, 4, secrets.token_bytes(16))  # not the key the store has
    sim.start()
    radio = OsdpBus(services, [OsdpPlacement(str(bus.path), 4, "garage", Side.IN)])
    try:
        await radio.start()
        await until(services, lambda records: any(
            r["event"] == "osdp_secure_channel_refused" for r in records))
        sim.present_card(10001)
        await asyncio.sleep(1.0)
        assert not await audit(services, "decision")
        assert not radio.panel.is_online(4)
    finally:
        await radio.stop()
        sim.stop()
        bus.close()


async def test_a_reader_without_a_key_does_not_start(tmp_path: Path) -> None:
    clock = ManualClock(MONDAY_9)
    services, _keys, _ = services_with_phones(SITE, clock, {})
    with pytest.raises(StartupError, match="passbridge osdp install"):
        OsdpBus(services, [OsdpPlacement(str(tmp_path / "tty"), 1, "front", Side.IN)])


@pytest.mark.parametrize(("spec", "message"), [
    ("/dev/ttyUSB0=front", "PORT:ADDRESS"),
    ("/dev/ttyUSB0:200=front", "address"),
    ("/dev/ttyUSB0:1=back", "no door 'back'"),
    ("/dev/ttyUSB0:1=front:up", "side"),
    ("/dev/ttyUSB0:1=front,format=37bit", "format="),
    ("/dev/ttyUSB0:1=front,keys=0", "keys="),
    ("/dev/ttyUSB0:1=front,baud=1200", "baud="),
    ("/dev/ttyUSB0:1=front,colour=red", "unknown option"),
])
def test_placements_name_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(StartupError, match=message):
        OsdpPlacement.parse(spec, ["front"])


def test_a_placement_with_options() -> None:
    place = OsdpPlacement.parse("/dev/ttyUSB0:3=front:out,format=h10301,facility=12,keys=8,"
                                "baud=38400", ["front"])
    assert (place.port, place.address, place.door, place.side, place.baud) == (
        "/dev/ttyUSB0", 3, "front", Side.OUT, 38400)
    assert place.settings.card_format == "h10301" and place.settings.facility == 12
    assert place.settings.inter_key_timeout == 8.0
    assert LinkChanged  # the adapter's event types stay importable from the service side


async def test_a_site_reload_keeps_the_doors_of_wired_readers() -> None:
    from passbridge.errors import ConfigError
    from passbridge.service.site_reload import reload_site

    clock = ManualClock(MONDAY_9)
    services, keystore, _ = services_with_phones(SITE, clock, {})
    keystore.set_osdp_key("garage", Side.IN, secrets.token_bytes(16))
    services.radios.append(OsdpBus(services, [OsdpPlacement("/dev/ttyUSB7", 2, "garage",
                                                            Side.IN)]))
    without_garage = SITE.split("  - id: garage")[0] + (
        "users:\n  - {id: alice, cards: ['10001'], pin: '2468', doors: [front]}\n")
    with pytest.raises(ConfigError) as refused:
        await reload_site(services, without_garage, source="test", actor="test", origin="new")
    assert "/dev/ttyUSB7:2" in str(refused.value.problems)
    assert "garage" in services.site.doors
