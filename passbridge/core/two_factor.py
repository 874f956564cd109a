"""Two-factor entry: the pending card at each door side, and PIN lockouts.

Two kinds of lockout share one counting rule (5 wrong codes in a row lock
for 60 s, each further lockout doubles up to 15 min): a user's two-factor
entry at a door, and a keypad's PIN-only entry (rules.md "Keypad lockout":
a code alone cannot be attributed to a user, so the keypad itself is
limited). Plain data with elapsed-time arithmetic; the engine decides what
a step means, this module only remembers what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from passbridge.core.model import Factor, Side
from passbridge.core.policy import (
    FIRST_LOCKOUT_SECONDS,
    LONGEST_LOCKOUT_SECONDS,
    WRONG_PINS_BEFORE_LOCKOUT,
)


@dataclass(frozen=True, slots=True)
class PendingCard:
    """A card or NFC step waiting for its entry code."""

    user: str
    credential: str | None
    factor: Factor
    started: float  # elapsed seconds

    def expired(self, now: float, pin_timeout: float) -> bool:
        return now - self.started > pin_timeout


@dataclass(slots=True)
class LockoutRecord:
    """Wrong codes in a row, and the lockouts they caused since the last reset."""

    wrong_pins: int = 0
    lockouts: int = 0
    locked_until: float = float("-inf")

    def locked(self, now: float) -> bool:
        """A lockout started at t of length d denies up to, not including, t + d."""
        return now < self.locked_until

    def remaining(self, now: float) -> float:
        return max(0.0, self.locked_until - now)

    def wrong(self, now: float) -> bool:
        """Count a wrong code; True when this one starts a lockout (and the
        count starts again)."""
        self.wrong_pins += 1
        if self.wrong_pins < WRONG_PINS_BEFORE_LOCKOUT:
            return False
        self.wrong_pins = 0
        self.lockouts += 1
        seconds = min(FIRST_LOCKOUT_SECONDS * 2 ** (self.lockouts - 1), LONGEST_LOCKOUT_SECONDS)
        self.locked_until = now + seconds
        return True


@dataclass(frozen=True, slots=True)
class Lockout:
    """One lockout in force: a user's two-factor entry at a door
    (``user`` set, ``side`` None) or a keypad's PIN-only entry (``side``
    set, ``user`` None). ``until`` is in elapsed seconds."""

    door: str
    until: float
    lockouts: int
    user: str | None = None
    side: Side | None = None


class TwoFactorMemory:
    """Pending cards keyed by (door, side); lockout records by (user, door)
    and, for PIN-only entry, by keypad (door, side).

    Memory stays bounded: one pending card and one keypad record per door
    side, and a user lockout record only for users who have typed a wrong
    code at that door since their last successful entry there.
    """

    def __init__(self) -> None:
        self._pending: dict[tuple[str, Side], PendingCard] = {}
        self._lockouts: dict[tuple[str, str], LockoutRecord] = {}
        self._keypads: dict[tuple[str, Side], LockoutRecord] = {}

    # --- pending cards -------------------------------------------------
    def pending(self, door: str, side: Side) -> PendingCard | None:
        return self._pending.get((door, side))

    def start(self, door: str, side: Side, card: PendingCard) -> None:
        self._pending[(door, side)] = card

    def clear(self, door: str, side: Side) -> None:
        self._pending.pop((door, side), None)

    def pending_at(self, door: str) -> list[tuple[Side, PendingCard]]:
        """The door's waiting cards, by side (expired ones included: the
        caller knows the door's timeout)."""
        return sorted(((side, card) for (d, side), card in self._pending.items() if d == door),
                      key=lambda found: found[0].value)

    def forget_door(self, door: str) -> None:
        for key in [k for k in self._pending if k[0] == door]:
            del self._pending[key]

    def retain(
        self,
        *,
        pending: Callable[[str, Side, PendingCard], bool],
        lockout: Callable[[str, str], bool],
        keypad: Callable[[str, Side], bool],
    ) -> tuple[list[tuple[str, Side]], list[tuple[str, str]], list[tuple[str, Side]]]:
        """Keep what each predicate accepts (a new site: core.engine
        ``replace_site``); returns what went: pending (door, side), user
        lockouts (user, door), keypad records (door, side), each sorted."""
        gone_pending = sorted(k for k, card in self._pending.items()
                              if not pending(k[0], k[1], card))
        gone_lockouts = sorted(k for k in self._lockouts if not lockout(*k))
        gone_keypads = sorted(k for k in self._keypads if not keypad(*k))
        for p in gone_pending:
            del self._pending[p]
        for u in gone_lockouts:
            del self._lockouts[u]
        for k in gone_keypads:
            del self._keypads[k]
        return gone_pending, gone_lockouts, gone_keypads

    # --- lockouts ------------------------------------------------------
    def locked_out(self, user: str, door: str, now: float) -> bool:
        record = self._lockouts.get((user, door))
        return record is not None and record.locked(now)

    def lockout_remaining(self, user: str, door: str, now: float) -> float:
        record = self._lockouts.get((user, door))
        return 0.0 if record is None else record.remaining(now)

    def wrong_pin(self, user: str, door: str, now: float) -> bool:
        """Count a wrong code; True when this one starts a lockout."""
        return self._lockouts.setdefault((user, door), LockoutRecord()).wrong(now)

    def entered(self, user: str, door: str) -> None:
        """A successful two-factor entry resets the count and the doubling."""
        self._lockouts.pop((user, door), None)

    def lockouts_in_force(self, now: float) -> list[Lockout]:
        """Every lockout that denies now, users' first, by door then user or side."""
        users = [Lockout(door, r.locked_until, r.lockouts, user=user)
                 for (user, door), r in sorted(self._lockouts.items()) if r.locked(now)]
        keypads = [Lockout(door, r.locked_until, r.lockouts, side=side)
                   for (door, side), r in sorted(self._keypads.items()) if r.locked(now)]
        return users + keypads

    def clear_lockout(self, user: str, door: str, now: float) -> bool:
        """An admin lifts a user's lockout at a door: the record goes (count
        and doubling start again, as after a successful entry). False when
        no lockout of that user at that door is in force."""
        if not self.locked_out(user, door, now):
            return False
        del self._lockouts[(user, door)]
        return True

    # --- keypad lockouts (PIN-only entry) ------------------------------
    def keypad_remaining(self, door: str, side: Side, now: float) -> float:
        """Seconds the keypad's PIN-only entry stays locked; 0.0 when open."""
        record = self._keypads.get((door, side))
        return 0.0 if record is None or not record.locked(now) else record.remaining(now)

    def keypad_wrong(self, door: str, side: Side, now: float) -> bool:
        """Count a PIN-only code that did not open; True when it locks the keypad."""
        return self._keypads.setdefault((door, side), LockoutRecord()).wrong(now)

    def keypad_opened(self, door: str, side: Side) -> None:
        """A correct code resets the keypad's count and its doubling."""
        self._keypads.pop((door, side), None)
