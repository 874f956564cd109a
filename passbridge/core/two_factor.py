"""Two-factor entry: the pending card at each door side, and PIN lockouts.

Plain data with elapsed-time arithmetic; the engine decides what a step
means, this module only remembers what happened.
"""

from __future__ import annotations

from dataclasses import dataclass

from passbridge.core.model import Factor, Side

WRONG_PINS_BEFORE_LOCKOUT = 5
FIRST_LOCKOUT_SECONDS = 60.0
LONGEST_LOCKOUT_SECONDS = 15 * 60.0


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
    wrong_pins: int = 0
    lockouts: int = 0
    locked_until: float = float("-inf")


class TwoFactorMemory:
    """Pending cards keyed by (door, side); lockout records by (user, door).

    Memory stays bounded: one pending card per door side, and a lockout
    record only for users who have typed a wrong code at that door since
    their last successful entry there.
    """

    def __init__(self) -> None:
        self._pending: dict[tuple[str, Side], PendingCard] = {}
        self._lockouts: dict[tuple[str, str], LockoutRecord] = {}

    # --- pending cards -------------------------------------------------
    def pending(self, door: str, side: Side) -> PendingCard | None:
        return self._pending.get((door, side))

    def start(self, door: str, side: Side, card: PendingCard) -> None:
        self._pending[(door, side)] = card

    def clear(self, door: str, side: Side) -> None:
        self._pending.pop((door, side), None)

    def forget_door(self, door: str) -> None:
        for key in [k for k in self._pending if k[0] == door]:
            del self._pending[key]

    # --- lockouts ------------------------------------------------------
    def locked_out(self, user: str, door: str, now: float) -> bool:
        record = self._lockouts.get((user, door))
        return record is not None and now < record.locked_until

    def lockout_remaining(self, user: str, door: str, now: float) -> float:
        record = self._lockouts.get((user, door))
        return 0.0 if record is None else max(0.0, record.locked_until - now)

    def wrong_pin(self, user: str, door: str, now: float) -> bool:
        """Count a wrong code; True when this one starts a lockout."""
        record = self._lockouts.setdefault((user, door), LockoutRecord())
        record.wrong_pins += 1
        if record.wrong_pins < WRONG_PINS_BEFORE_LOCKOUT:
            return False
        record.wrong_pins = 0
        record.lockouts += 1
        seconds = min(FIRST_LOCKOUT_SECONDS * 2 ** (record.lockouts - 1), LONGEST_LOCKOUT_SECONDS)
        record.locked_until = now + seconds
        return True

    def entered(self, user: str, door: str) -> None:
        """A successful two-factor entry resets the count and the doubling."""
        self._lockouts.pop((user, door), None)
