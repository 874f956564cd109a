"""The door status over the real reader path (nfcpy's udp driver, the bridge,
the core, the audit log): what each decision tells the phone, which flow the
decision record names, and a phone that refuses the status being seen."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from passbridge.bridge import nfc_tap
from passbridge.bridge.nfc_tap import TapRequest, tap_reader_status
from passbridge.clock import ManualClock, SystemClock
from passbridge.core.model import DoorState, Factor, Reason, Result, Side
from passbridge.service.app import create_app
from passbridge.service.hardware import NfcDoorReader, Placement
from passbridge.service.runtime import Services
from passbridge.sim.nfc_card import SimulatedCard
from passbridge.sim.radios import SimulatedRadios
from tests.service_support import services_with_phones

SITE = """
site: {id: hq, timezone: America/Los_Angeles}
doors:
  - {id: front, reader: true, keypad: true}
  - id: lab
    reader: true
    keypad: true
    schedule:
      - {days: [mon, tue, wed, thu, fri], start: "07:00", end: "19:00", state: two_factor}
users:
  - {id: alice, cards: ["10001"], pin: "2468", phones: [alice-phone], doors: all}
  - {id: dave, phones: [dave-phone], doors: all, enabled: false}
"""


@dataclass
class Air:
    services: Services
    radios: SimulatedRadios


@pytest.fixture
async def air() -> AsyncIterator[Air]:
    clock = ManualClock(datetime(2026, 11, 30, 9, tzinfo=ZoneInfo("America/Los_Angeles")))
    services, keystore, phones = services_with_phones(
        SITE, clock, {"alice-phone": "alice", "dave-phone": "dave"})
    radios = SimulatedRadios(services.controller, keystore, clock, services.proximity,
                             phones, refusals=services.metrics)
    yield Air(services, radios)
    await radios.close()


async def test_each_decision_tells_the_phone_its_status_and_the_record_names_the_flow(
    air: Air,
) -> None:
    opened = await air.radios.nfc_tap_report("alice-phone", "front")
    assert (opened.decision.result, opened.decision.reason) == (Result.GRANTED,
                                                                Reason.ACCESS_GRANTED)
    assert opened.phone_status == 0x0101 and opened.phone_refusal is None
    assert opened.decision.detail == "NFC STANDARD tap"

    await air.services.controller.set_override("front", DoorState.LOCKED, 10, actor="test")
    refused = await air.radios.nfc_tap_report("alice-phone", "front")
    assert refused.decision.reason is Reason.DOOR_LOCKED
    assert refused.phone_status == 0x0025 and refused.phone_refusal is None
    assert refused.decision.detail == "NFC FAST tap"

    pending = await air.radios.nfc_tap_report("alice-phone", "lab")
    assert pending.decision.result is Result.PENDING
    assert pending.phone_status == 0x0100
    assert pending.decision.detail == "NFC FAST tap"

    # The audited records say it too, in the order the taps came.
    events = await air.services.audit.store.page(0, 10)
    taps = [(e["reason"], e["detail"]) for e in events if e["kind"] == "decision"]
    assert taps == [
        ("access_granted", "NFC STANDARD tap"),
        ("door_locked", "NFC FAST tap"),
        ("pin_required", "NFC FAST tap"),
    ]


async def test_a_detail_the_core_gives_keeps_it_and_adds_the_flow(air: Air) -> None:
    refused = await air.radios.nfc_tap_report("dave-phone", "front")
    assert refused.decision.reason is Reason.NO_ACCESS
    assert refused.decision.detail == "user disabled; NFC STANDARD tap"
    assert refused.phone_status == 0x0025


async def test_bluetooth_tells_the_phone_the_same_table(air: Air) -> None:
    refused = await air.radios.ble_unlock("alice-phone", "lab", rssi=-40)
    assert refused.reason is Reason.BLE_NOT_ALLOWED
    applet = air.radios._ble_phones["alice-phone"].process.__self__  # type: ignore[attr-defined]
    assert applet.last_reader_status == 0x0025 and applet.last_door_status is False


async def test_no_decision_in_time_tells_the_phone_the_reader_failed(air: Air) -> None:
    # decide() gave up (timeout or error) before any decision arrived: the door
    # stays shut and the phone is not told it was refused by its rights.
    assert tap_reader_status(TapRequest(credential_id="alice-phone"), False) == 0x0026
    # A decision that arrived after decide() gave up does not override the answer.
    late = await air.services.controller.mobile_factor(
        user="alice", door="front", side=Side.IN, factor=Factor.NFC,
        credential="alice-phone", evidence={"txn": "00" * 16, "flow": "FAST"})
    assert late.granted
    request = TapRequest(credential_id="alice-phone", decision=late)
    assert tap_reader_status(request, False) == 0x0026
    assert tap_reader_status(request, True) == 0x0101


async def test_a_phone_refusing_the_door_status_is_logged_and_counted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """serve's own reader placement over nfcpy's udp driver, /metrics over HTTP."""
    clock = SystemClock()
    services, keystore, phones = services_with_phones(SITE, clock, {"alice-phone": "alice"})
    phone = phones["alice-phone"]
    applet = phone.applet(keystore.reader_key().public_key)
    # A regression: the reader sends 0000, which passbridge used to send on refusals.
    monkeypatch.setattr(nfc_tap, "exchange_status", lambda result, reason: 0x0000)
    caplog.set_level(logging.WARNING, logger="passbridge.bridge.nfc_tap")
    counted = re.compile(
        r'^passbridge_nfc_exchange_refused_total\{door="front",status="0000",'
        r'status_word="6701"\} (\d+)\.0$', re.M)
    with SimulatedCard(applet.process) as card:
        services.radios.append(NfcDoorReader(services, Placement(card.device, "front", Side.IN)))
        async with TestClient(TestServer(create_app(services), host="127.0.0.1")) as client:
            deadline = time.monotonic() + 20
            text = ""
            while time.monotonic() < deadline:
                text = await (await client.get("/metrics")).text()
                if counted.search(text):
                    break
                await asyncio.sleep(0.05)
    match = counted.search(text)
    assert match is not None and int(match.group(1)) >= 1, text
    assert applet.last_reader_status == 0x0000
    assert applet.last_door_status is None  # the phone showed nothing
    refusals = [r.getMessage() for r in caplog.records if "refused the door status" in r.message]
    assert refusals, caplog.text
    assert "door front/in" in refusals[0] and "0000" in refusals[0] and "6701" in refusals[0]
    # The decision itself was made and audited all the same.
    events = await services.audit.store.page(0, 10)
    assert events and events[0]["reason"] == "access_granted"
