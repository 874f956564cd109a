"""Keypad lockout for PIN-only entry (rules.md "Keypad lockout (PIN-only entry)").

5 codes in a row that do not open, on one keypad, lock that keypad's
PIN-only entry for 60 s, doubling on each further lockout up to 15 min; a
correct code resets it. Cards, and PINs that follow a card, are not affected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import example, given, settings
from hypothesis import strategies as st

from passbridge.core.model import DoorState, Factor, Reason, Result
from passbridge.core.two_factor import LockoutRecord
from passbridge.service.app import create_app
from tests.engine_helpers import Harness
from tests.service_support import make_rig

SITE = """
site: {id: hq, timezone: America/Los_Angeles}
doors:
  - {id: side, reader: true, keypad: true}
  - {id: back, reader: true, keypad: true}
users:
  - {id: alice, cards: ["10001"], pin: "2468", doors: all}
  - {id: carol, cards: ["30003"], pin: "1357", doors: [back]}
"""
MONDAY_9 = datetime(2026, 11, 30, 9, 0)


@pytest.fixture
def h() -> Harness:
    return Harness(SITE, MONDAY_9)


def wrong(h: Harness, n: int, door: str = "side") -> list[Reason]:
    return [h.pin(door, f"{9000 + i}").reason for i in range(n)]


def test_five_wrong_codes_lock_the_keypad_for_sixty_seconds(h: Harness) -> None:
    assert wrong(h, 4) == [Reason.PIN_INCORRECT] * 4
    fifth = h.pin("side", "0000")
    assert fifth.reason is Reason.PIN_INCORRECT and "keypad locked" in (fifth.detail or "")
    locked = h.pin("side", "2468")  # even the right code
    assert (locked.result, locked.reason, locked.factor) == (
        Result.DENIED, Reason.LOCKED_OUT, Factor.PIN)
    assert locked.user is None and "60 s left" in (locked.detail or "")
    # Up to, not including, t + 60 s.
    assert h.after(59.999).pin("side", "2468").reason is Reason.LOCKED_OUT
    assert h.after(0.001).pin("side", "2468").reason is Reason.ACCESS_GRANTED


def test_lockouts_double_up_to_fifteen_minutes(h: Harness) -> None:
    for length in (60, 120, 240, 480, 900, 900):
        # Each round's first wrong code is answered pin_incorrect, so the
        # lockout before it has ended exactly on time.
        assert wrong(h, 5) == [Reason.PIN_INCORRECT] * 5
        assert h.after(length - 0.5).pin("side", "2468").reason is Reason.LOCKED_OUT
        h.after(0.5)
    assert h.pin("side", "2468").reason is Reason.ACCESS_GRANTED


def test_record_counts_and_doubles() -> None:
    record = LockoutRecord()
    starts = [record.wrong(now=float(i)) for i in range(5)]
    assert starts == [False, False, False, False, True]
    assert record.locked(63.999) and not record.locked(64.0)
    assert [record.wrong(100.0) for _ in range(5)][-1] and record.remaining(100.0) == 120.0


def test_a_correct_code_resets_count_and_doubling(h: Harness) -> None:
    wrong(h, 4)
    assert h.pin("side", "2468").reason is Reason.ACCESS_GRANTED
    assert wrong(h, 4) == [Reason.PIN_INCORRECT] * 4  # a fresh count: no lockout yet
    assert h.pin("side", "2468").reason is Reason.ACCESS_GRANTED
    wrong(h, 5)
    h.after(60)
    wrong(h, 5)  # second lockout: 120 s
    assert h.after(119).pin("side", "2468").reason is Reason.LOCKED_OUT
    assert h.after(1).pin("side", "2468").reason is Reason.ACCESS_GRANTED
    wrong(h, 5)  # after the reset, the first length again
    assert h.after(60).pin("side", "2468").reason is Reason.ACCESS_GRANTED


def test_codes_of_users_without_access_count_as_wrong(h: Harness) -> None:
    assert [h.pin("side", "1357").reason for _ in range(5)] == [Reason.NO_ACCESS] * 5
    assert h.pin("side", "2468").reason is Reason.LOCKED_OUT


def test_the_lockout_is_per_keypad(h: Harness) -> None:
    wrong(h, 5)
    assert h.pin("back", "1357").reason is Reason.ACCESS_GRANTED
    assert h.pin("side", "2468").reason is Reason.LOCKED_OUT


def test_cards_and_pins_after_a_card_are_not_affected(h: Harness) -> None:
    wrong(h, 5)
    assert h.card("side", "10001").reason is Reason.ACCESS_GRANTED
    h.core.set_override("side", DoorState.TWO_FACTOR, 10, h.clock.moment())
    assert h.card("side", "10001").reason is Reason.PIN_REQUIRED
    assert h.pin("side", "2468").reason is Reason.TWO_FACTOR_COMPLETE
    assert h.pin("side", "2468").reason is Reason.PIN_WITHOUT_CARD
    h.core.set_override("side", None, None, h.clock.moment())
    assert h.pin("side", "2468").reason is Reason.LOCKED_OUT


def test_brute_force_of_every_code_is_stopped(h: Harness) -> None:
    """Issue 8: all 10,000 codes were once tried in 5 s."""
    results = [h.after(0.0005).pin("side", f"{code:04d}").reason for code in range(10_000)]
    assert Reason.ACCESS_GRANTED not in results
    assert results.count(Reason.PIN_INCORRECT) == 5


async def test_keypad_route_stops_brute_force() -> None:
    """Through the HTTP keypad route of a real aiohttp server, with the device key."""
    r = make_rig()
    async with TestClient(TestServer(create_app(r.services))) as client:
        async def code(value: str) -> dict[str, str]:
            resp = await client.post("/v1/doors/pad/keypad", json={"code": value},
                                     headers={"Authorization":
                                              f"Bearer {r.device('pad', 'keypad')}"})
            assert resp.status == 200
            return dict(await resp.json())

        answers = [await code(f"{n:04d}") for n in range(30)]
        assert [a["reason"] for a in answers] == ["pin_incorrect"] * 5 + ["locked_out"] * 25
        assert (await code("1357"))["reason"] == "locked_out"  # bob's code, pad is his
        r.clock.advance(60)
        assert (await code("1357"))["reason"] == "access_granted"
    events = await r.services.audit.page(0, 100)
    assert sum(e["reason"] == "locked_out" for e in events) == 26  # each one audited


@dataclass
class KeypadModel:
    """rules.md "Keypad lockout", written apart from the engine."""

    now: float = 0.0
    wrong: int = 0
    lockouts: int = 0
    until: float = float("-inf")

    def code(self, opens: bool, exists: bool) -> Reason:
        if self.now < self.until:
            return Reason.LOCKED_OUT
        if opens:
            self.wrong = self.lockouts = 0
            return Reason.ACCESS_GRANTED
        self.wrong += 1
        if self.wrong == 5:
            self.wrong, self.lockouts = 0, self.lockouts + 1
            self.until = self.now + min(60 * 2 ** (self.lockouts - 1), 900)
        return Reason.NO_ACCESS if exists else Reason.PIN_INCORRECT


CODES = {"2468": (True, True), "1357": (False, True), "0000": (False, False)}  # side door


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("code"), st.sampled_from(sorted(CODES))),
    st.tuples(st.just("wait"), st.sampled_from([0.5, 59.5, 60, 60.5, 119, 121, 899, 900, 901])),
    st.tuples(st.just("card"), st.just("10001")),
), max_size=60))
@example([("code", "0000")] * 5 + [("wait", 60), ("code", "2468")])
@example(([("code", "0000")] * 5 + [("wait", 900)]) * 6 + [("code", "0000")] * 5
         + [("wait", 899), ("code", "2468")])
@pytest.mark.slow
def test_keypad_matches_the_reference_model(sequence: list[tuple[str, object]]) -> None:
    h = Harness(SITE, MONDAY_9)
    model = KeypadModel()
    for action, value in sequence:
        if action == "wait":
            h.after(float(str(value)))
            model.now += float(str(value))
        elif action == "card":
            assert h.card("side", str(value)).reason is Reason.ACCESS_GRANTED
        else:
            assert h.pin("side", str(value)).reason is model.code(*CODES[str(value)]), model
