"""The reader's lights and beeps per decision (passbridge/bridge/reader_feedback.py),
on decisions the real core makes, and checked against libosdp's command fields."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import osdp
import pytest

from passbridge.bridge.reader_feedback import (
    DENIAL_SHOW_MS,
    LOCKED_OUT_SHOW_MS,
    BuzzerCommand,
    LedColor,
    LedCommand,
    cancel_waiting,
    feedback_for,
)
from passbridge.core.model import Reason, Result
from tests.engine_helpers import Harness

SITE = """
site: {id: hq, timezone: America/Los_Angeles}
doors:
  - id: front
    reader: true
    keypad: true
    unlock_seconds: 7
    pin_timeout: 20
    schedule:
      - {id: always, days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "00:00",
         state: two_factor}
  - {id: garage, reader: true, unlock_seconds: 9}
users:
  - {id: alice, cards: ["10001"], pin: "2468", doors: all}
"""
MONDAY_9 = datetime(2026, 11, 30, 9, 0)


@pytest.fixture
def h() -> Harness:
    return Harness(SITE, MONDAY_9)


def test_pending_pin_required_blinks_amber_for_the_doors_pin_timeout(h: Harness) -> None:
    pending = h.card("front", "10001")
    assert (pending.result, pending.reason) == (Result.PENDING, Reason.PIN_REQUIRED)
    led, beep = feedback_for(pending, h.site.doors["front"])
    assert led == LedCommand(LedColor.AMBER, on_ms=500, off_ms=500, duration_ms=20_000)
    assert beep == BuzzerCommand(on_ms=100, off_ms=0, count=1)


def test_the_pin_grant_shows_green_for_unlock_seconds(h: Harness) -> None:
    h.card("front", "10001")
    granted = h.after(3).pin("front", "2468")
    assert granted.reason is Reason.TWO_FACTOR_COMPLETE
    led, beep = feedback_for(granted, h.site.doors["front"])
    assert led == LedCommand(LedColor.GREEN, on_ms=100, off_ms=0, duration_ms=7000)
    assert beep == BuzzerCommand(on_ms=200, off_ms=0, count=1)


def test_a_card_grant_uses_the_decisions_unlock_time(h: Harness) -> None:
    granted = h.card("garage", "10001")
    assert granted.granted and granted.unlock_seconds == 9
    led, _ = feedback_for(granted, h.site.doors["garage"])
    assert (led.color, led.duration_ms) == (LedColor.GREEN, 9000)


def test_a_denial_is_red_with_a_short_double_beep(h: Harness) -> None:
    denied = h.card("front", "99999")
    assert denied.reason is Reason.UNKNOWN_CREDENTIAL
    led, beep = feedback_for(denied, h.site.doors["front"])
    assert led == LedCommand(LedColor.RED, on_ms=100, off_ms=0, duration_ms=DENIAL_SHOW_MS)
    assert beep == BuzzerCommand(on_ms=100, off_ms=100, count=2)


def test_locked_out_has_its_own_pattern(h: Harness) -> None:
    h.card("front", "10001")
    for i in range(5):
        h.pin("front", f"{9000 + i}")
    locked = h.card("front", "10001")
    assert locked.reason is Reason.LOCKED_OUT
    led, beep = feedback_for(locked, h.site.doors["front"])
    assert led == LedCommand(LedColor.RED, on_ms=100, off_ms=100,
                             duration_ms=LOCKED_OUT_SHOW_MS)
    assert beep == BuzzerCommand(on_ms=1000, off_ms=0, count=1)
    plain = feedback_for(h.card("front", "99999"), h.site.doors["front"])
    assert plain != (led, beep)


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_feedback_by_its_result(h: Harness, reason: Reason) -> None:
    template = h.card("front", "99999")
    decision = dataclasses.replace(template, reason=reason, result=reason.result,
                                   unlock_seconds=5 if reason.result is Result.GRANTED else None)
    led, beep = feedback_for(decision, h.site.doors["front"])
    expected = {Result.GRANTED: LedColor.GREEN, Result.PENDING: LedColor.AMBER,
                Result.DENIED: LedColor.RED}[reason.result]
    assert led.color is expected and isinstance(beep, BuzzerCommand)


def test_reader_number_is_carried(h: Harness) -> None:
    commands = feedback_for(h.card("front", "99999"), h.site.doors["front"], reader=1)
    assert all(c.reader == 1 for c in commands)
    assert all(c.osdp_fields()["reader"] == 1 for c in commands)


def test_cancel_waiting_cancels_the_temporary_state() -> None:
    fields = cancel_waiting().osdp_fields()
    assert fields["temporary"] is True and fields["control_code"] == 1


def test_led_fields_are_libosdps() -> None:
    led = LedCommand(LedColor.AMBER, on_ms=500, off_ms=500, duration_ms=15_000, reader=0)
    assert led.osdp_fields() == {
        "reader": 0, "led_number": 0, "temporary": True, "control_code": 2,
        "on_color": osdp.CommandLEDColor.Amber, "off_color": osdp.CommandLEDColor.Black,
        "on_count": 5, "off_count": 5, "timer_count": 150,
    }


def test_buzzer_fields_are_libosdps() -> None:
    assert BuzzerCommand(on_ms=100, off_ms=100, count=2).osdp_fields() == {
        "reader": 0, "control_code": 2, "on_count": 1, "off_count": 1, "rep_count": 2}


def test_colour_codes_are_libosdps() -> None:
    for color in LedColor:
        assert getattr(osdp.CommandLEDColor, color.name.capitalize()) == color


@pytest.mark.parametrize(("make", "message"), [
    (lambda: LedCommand(LedColor.RED, on_ms=150, off_ms=0, duration_ms=1000), "multiple of 100"),
    (lambda: LedCommand(LedColor.RED, on_ms=0, off_ms=0, duration_ms=1000), "LED on time"),
    (lambda: LedCommand(LedColor.RED, on_ms=100, off_ms=25_600, duration_ms=1000),
     "at most 25500"),
    (lambda: LedCommand(LedColor.RED, on_ms=100, off_ms=0, duration_ms=6_553_600),
     "LED duration"),
    (lambda: BuzzerCommand(on_ms=0, off_ms=0, count=1), "beep length"),
    (lambda: BuzzerCommand(on_ms=100, off_ms=0, count=0), "beep count"),
    (lambda: BuzzerCommand(on_ms=100, off_ms=0, count=256), "beep count"),
])
def test_commands_the_wire_cannot_carry_are_refused(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_the_longest_waits_fit_the_wire(h: Harness) -> None:
    """pin_timeout and unlock_seconds of 60 s (the contract's maximum) fit."""
    door = dataclasses.replace(h.site.doors["front"], pin_timeout=60, unlock_seconds=60)
    pending = h.card("front", "10001")
    assert feedback_for(pending, door)[0].osdp_fields()["timer_count"] == 600
