"""An admin lists and lifts lockouts: the core's part (pure, on the manual clock)."""

from __future__ import annotations

from datetime import datetime

from passbridge.core.model import Reason, Side
from passbridge.core.two_factor import Lockout
from tests.engine_helpers import Harness

SITE = """
site: {id: hq, timezone: America/Los_Angeles}
doors:
  - id: front
    reader: true
    keypad: true
    schedule:
      - {id: always, days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00",
         state: two_factor}
  - {id: pad, reader: true, keypad: true}
users:
  - {id: alice, cards: ["10001"], pin: "2468", doors: all}
  - {id: bob, cards: ["20002"], pin: "1357", doors: all}
"""
MONDAY_9 = datetime(2026, 11, 30, 9, 0)


def lock_out(h: Harness, card: str, door: str = "front") -> None:
    assert h.card(door, card).reason is Reason.PIN_REQUIRED
    for i in range(5):
        assert h.pin(door, f"{9000 + i}").reason is Reason.PIN_INCORRECT
    assert h.card(door, card).reason is Reason.LOCKED_OUT


def test_lockouts_in_force_name_user_door_and_end() -> None:
    h = Harness(SITE, MONDAY_9)
    assert h.core.lockouts(h.clock.moment()) == []
    lock_out(h, "10001")
    for i in range(5):
        h.pin("pad", f"{8000 + i}")
    now = h.clock.elapsed()
    assert h.core.lockouts(h.clock.moment()) == [
        Lockout("front", now + 60, 1, user="alice"),
        Lockout("pad", now + 60, 1, side=Side.IN),
    ]
    # Over when it ends: not listed any more.
    assert h.after(60).core.lockouts(h.clock.moment()) == []


def test_clearing_lifts_the_lockout_and_resets_the_doubling() -> None:
    h = Harness(SITE, MONDAY_9)
    lock_out(h, "10001")
    lock_out(h, "20002")
    assert h.core.clear_lockout("front", "alice", h.clock.moment()) is True
    assert [lo.user for lo in h.core.lockouts(h.clock.moment())] == ["bob"]
    assert h.card("front", "10001").reason is Reason.PIN_REQUIRED
    assert h.pin("front", "2468").reason is Reason.TWO_FACTOR_COMPLETE
    # The next lockout is the first again: 60 s, not 120 s.
    lock_out(h, "10001")
    alice = next(lo for lo in h.core.lockouts(h.clock.moment()) if lo.user == "alice")
    assert (alice.lockouts, alice.until - h.clock.elapsed()) == (1, 60)
    # Nothing in force: nothing cleared.
    assert h.core.clear_lockout("pad", "alice", h.clock.moment()) is False
    assert h.core.clear_lockout("front", "nobody", h.clock.moment()) is False
