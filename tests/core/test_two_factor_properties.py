"""Random card / PIN / wait sequences on a two-factor door against a small
reference model of rules.md section 3, written independently of the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from hypothesis import example, given, settings
from hypothesis import strategies as st

from passbridge.core.model import Reason
from tests.engine_helpers import Harness

SITE = """
site: {id: hq, timezone: Europe/Berlin}
doors:
  - id: front
    reader: true
    keypad: true
    pin_timeout: 10
    schedule:
      - {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00", state: two_factor}
users:
  - {id: alice, cards: ["1"], pin: "1111", doors: all}
  - {id: bob, cards: ["2"], pin: "2222", doors: all}
  - {id: carol, cards: ["3"], pin: "3333", doors: []}
  - {id: dave, cards: ["4"], doors: all}
"""
CARDS = {"1": "alice", "2": "bob", "3": "carol", "4": "dave"}
PINS = {"alice": "1111", "bob": "2222", "carol": "3333"}
MAY_OPEN = {"alice", "bob", "dave"}


@dataclass
class Reference:
    now: float = 0.0
    pending: tuple[str, float] | None = None
    wrong: dict[str, int] = field(default_factory=dict)
    lockouts: dict[str, int] = field(default_factory=dict)
    until: dict[str, float] = field(default_factory=dict)

    def card(self, number: str) -> Reason:
        # rules.md "Exact readings": any card step ends the pending card,
        # whatever its own result.
        self.pending = None
        user = CARDS.get(number)
        if user is None:
            return Reason.UNKNOWN_CREDENTIAL
        if user not in MAY_OPEN:
            return Reason.NO_ACCESS
        if user not in PINS:
            return Reason.PROFILE_INCOMPLETE
        if self.now < self.until.get(user, float("-inf")):
            return Reason.LOCKED_OUT
        self.pending = (user, self.now)
        return Reason.PIN_REQUIRED

    def pin(self, code: str) -> Reason:
        if self.pending is None:
            return Reason.PIN_WITHOUT_CARD
        user, started = self.pending
        if self.now - started > 10:
            self.pending = None
            return Reason.PIN_TIMEOUT
        if code == PINS[user]:
            self.pending = None
            self.wrong.pop(user, None)
            self.lockouts.pop(user, None)
            return Reason.TWO_FACTOR_COMPLETE
        self.wrong[user] = self.wrong.get(user, 0) + 1
        if self.wrong[user] == 5:
            self.wrong[user] = 0
            self.lockouts[user] = self.lockouts.get(user, 0) + 1
            self.until[user] = self.now + min(60 * 2 ** (self.lockouts[user] - 1), 900)
            self.pending = None
        return Reason.PIN_INCORRECT


# A card followed by waits and PINs is the shape that exercises the rules, so
# most draws are such rounds; boundaries (10 s timeout, 60 s lockout,
# doubling, the 15 min cap) are among the waits.
WAITS = [0.5, 3, 9.5, 10, 10.5, 59, 61, 119, 121, 899, 901]
one_round = st.tuples(
    st.tuples(st.just("card"), st.sampled_from(["1", "2", "1", "2", "3", "4", "9"])),
    st.lists(st.tuples(st.just("wait"), st.sampled_from(WAITS)), max_size=2),
    st.lists(st.tuples(st.just("pin"), st.sampled_from(["1111", "2222", "0000"])), max_size=5),
).map(lambda r: [r[0], *r[1], *r[2]])
stray = st.one_of(
    st.tuples(st.just("pin"), st.sampled_from(["1111", "2222", "0000"])),
    st.tuples(st.just("wait"), st.sampled_from(WAITS)),
).map(lambda step: [step])
steps = st.lists(st.one_of(one_round, one_round, stray), min_size=1, max_size=25).map(
    lambda rounds: [step for r in rounds for step in r]
)
FIVE_WRONG = [("card", "1"), ("pin", "0000")] * 5
BOB_FIVE_WRONG = [("card", "2"), ("pin", "0000")] * 5


@settings(max_examples=300, deadline=None)
@given(steps)
@example([("card", "1"), ("wait", 10), ("pin", "1111")])
@example([("card", "1"), ("wait", 10.5), ("pin", "1111")])
@example([*FIVE_WRONG, ("wait", 59), ("card", "1"), ("wait", 1), ("card", "1")])
@example([*FIVE_WRONG, ("wait", 61), *FIVE_WRONG, ("wait", 119), ("card", "1"),
          ("wait", 2), ("card", "1"), ("pin", "1111"), *FIVE_WRONG, ("wait", 61), ("card", "1")])
@example([("card", "1"), *[("pin", "0000")] * 4, ("pin", "1111"), ("card", "1"), ("pin", "0000"),
          ("card", "1")])
@example([*BOB_FIVE_WRONG, ("card", "1"), ("card", "2"), ("pin", "1111")])
@example([("card", "1"), ("card", "9"), ("pin", "1111")])
@example([("card", "1"), ("card", "3"), ("pin", "1111")])
@example([("card", "1"), ("card", "4"), ("pin", "1111")])
@example([*(FIVE_WRONG + [("wait", 901)]) * 6, *FIVE_WRONG, ("wait", 899), ("card", "1"),
          ("wait", 2), ("card", "1")])
def test_engine_matches_the_reference_model(sequence: list[tuple[str, object]]) -> None:
    h = Harness(SITE, datetime(2026, 3, 28, 23, 0))  # crosses the DST change at 02:00
    ref = Reference()
    for action, value in sequence:
        if action == "wait":
            h.after(float(str(value)))
            ref.now += float(str(value))
            continue
        if action == "card":
            got, want = h.card("front", str(value)).reason, ref.card(str(value))
        else:
            got, want = h.pin("front", str(value)).reason, ref.pin(str(value))
        assert got is want, (action, value, ref)
