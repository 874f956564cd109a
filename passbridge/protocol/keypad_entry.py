"""Keypad entry at one wired reader, sans-I/O: key presses -> an entry code.

An OSDP keypad reports keys as they are pressed (osdp_KEYPAD); libosdp 3.2.9
hands them over as ``{'event': Event.KeyPress, 'data': b'1234#'}``, one or
several keys per event. A :class:`KeypadEntry` per reader buffers them and
says when a code is complete. The caller passes the time (monotonic
seconds) with every call; nothing here reads a clock, sleeps or logs.

Keys (the OSDP keypad encoding, and the ASCII characters simulators and
libosdp's examples send):

- ``0``-``9`` (0x30-0x39): a digit;
- ``#`` (0x23) or ENTER (0x0D, OSDP's code for ``#``): submit;
- ``*`` (0x2A) or DEL (0x7F, OSDP's code for ``*``): clear what was typed.

Outcomes (each wipes the buffer):

- :class:`CodeEntered` when ``#`` follows 1 to :data:`MAX_DIGITS` digits.
  Whether the code has a valid PIN length is the core's business, not the
  keypad's (a short code is a wrong PIN, audited as such).
- :class:`EntryCleared` on ``*`` with digits typed (``*`` on an empty
  buffer is no event).
- :class:`EntryTimedOut` when more than ``inter_key_timeout`` seconds passed
  since the last key of a partial code: the stale digits are dropped (the
  next person at the door must not inherit them) and the new key starts
  afresh. :meth:`KeypadEntry.expire` says the same without a key.
- :class:`EntryRejected` on any other byte (the rest of that event is
  dropped too: a garbled frame is not half-believed) or a 17th digit
  (overlong input is refused, never cut to length: PINs are 4-16 digits).

``#`` with no digits is no event: a stray press submits nothing.

The digits live only in the buffer until the outcome that ends it; no
outcome's ``repr`` shows a code, and :class:`CodeEntered` is the only place
a code leaves this module.

The flow is the table :data:`TRANSITIONS` (the style of
:mod:`passbridge.protocol.aliro_reader`): two states, the key classes as
inputs, and the outcome each step yields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum, auto

from passbridge.core.policy import PIN_DIGITS

__all__ = [
    "DEFAULT_INTER_KEY_TIMEOUT",
    "MAX_DIGITS",
    "TRANSITIONS",
    "CodeEntered",
    "EntryCleared",
    "EntryOutcome",
    "EntryRejected",
    "EntryTimedOut",
    "Key",
    "KeypadEntry",
    "State",
]

#: The longest code a keypad buffers: the longest PIN the contract allows.
MAX_DIGITS = PIN_DIGITS[1]

#: Seconds between two keys before a partial code is dropped. Five seconds
#: lets a person look up from the keypad and go on, and is short enough that
#: the next person does not inherit half a code (docs/decisions.md).
DEFAULT_INTER_KEY_TIMEOUT = 5.0

_SUBMIT_BYTES = frozenset(b"#\r")
_CLEAR_BYTES = frozenset(b"*\x7f")
_DIGIT_BYTES = frozenset(b"0123456789")


@dataclass(frozen=True, slots=True)
class CodeEntered:
    """``#`` after 1-16 digits: the code, for the core's ``pin`` factor."""

    code: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class EntryCleared:
    """``*`` dropped the digits typed so far."""


@dataclass(frozen=True, slots=True)
class EntryTimedOut:
    """The partial code went stale (no key within the inter-key timeout)."""


@dataclass(frozen=True, slots=True)
class EntryRejected:
    """Junk bytes or an overlong code; ``detail`` says which (never a digit)."""

    detail: str


EntryOutcome = CodeEntered | EntryCleared | EntryTimedOut | EntryRejected


class State(StrEnum):
    """Whether digits are buffered."""

    IDLE = auto()
    TYPING = auto()


class Key(StrEnum):
    """What a key press is, as the table sees it."""

    DIGIT = auto()  # a digit that fits the buffer
    EXTRA_DIGIT = auto()  # a digit past MAX_DIGITS
    SUBMIT = auto()
    CLEAR = auto()
    JUNK = auto()  # any other byte
    STALE = auto()  # the time since the last key ran past the timeout


Step = tuple[State, type[EntryOutcome] | None]

TRANSITIONS: dict[tuple[State, Key], Step] = {
    (State.IDLE, Key.DIGIT): (State.TYPING, None),
    (State.IDLE, Key.SUBMIT): (State.IDLE, None),
    (State.IDLE, Key.CLEAR): (State.IDLE, None),
    (State.IDLE, Key.JUNK): (State.IDLE, EntryRejected),
    (State.TYPING, Key.DIGIT): (State.TYPING, None),
    (State.TYPING, Key.EXTRA_DIGIT): (State.IDLE, EntryRejected),
    (State.TYPING, Key.SUBMIT): (State.IDLE, CodeEntered),
    (State.TYPING, Key.CLEAR): (State.IDLE, EntryCleared),
    (State.TYPING, Key.JUNK): (State.IDLE, EntryRejected),
    (State.TYPING, Key.STALE): (State.IDLE, EntryTimedOut),
}
"""(state, key) -> (next state, the outcome it yields, if any). A digit from
IDLE cannot be EXTRA_DIGIT (MAX_DIGITS >= 1) and IDLE has nothing to go
stale; those pairs are not in the table and never occur."""


class KeypadEntry:
    """The keypad buffer of one reader. Not thread-safe: one per reader, fed
    from one place (the CP adapter's event hand-off)."""

    def __init__(self, inter_key_timeout: float = DEFAULT_INTER_KEY_TIMEOUT) -> None:
        if not inter_key_timeout > 0:
            raise ValueError("the inter-key timeout is a positive number of seconds")
        self.inter_key_timeout = inter_key_timeout
        self._state = State.IDLE
        self._digits = bytearray()
        self._last_key_at = 0.0

    def __repr__(self) -> str:
        return f"KeypadEntry(state={self._state}, inter_key_timeout={self.inter_key_timeout})"

    @property
    def state(self) -> State:
        return self._state

    @property
    def typing(self) -> bool:
        """Whether a partial code is buffered (its length is not told)."""
        return self._state is State.TYPING

    def feed(self, keys: bytes, now: float) -> list[EntryOutcome]:
        """Keys from one keypad event at monotonic time ``now`` -> the outcomes."""
        outcomes = self.expire(now)
        for index, byte in enumerate(keys):
            outcome = self._step(self._classify(byte), byte)
            if outcome is not None:
                outcomes.append(outcome)
                if isinstance(outcome, EntryRejected):
                    if index + 1 < len(keys):
                        outcomes[-1] = EntryRejected(
                            f"{outcome.detail}; {len(keys) - index - 1} more keys of that "
                            "event dropped")
                    break
        if self._state is State.TYPING:
            self._last_key_at = now
        return outcomes

    def expire(self, now: float) -> list[EntryOutcome]:
        """:class:`EntryTimedOut` if the partial code went stale by ``now``.

        A key exactly ``inter_key_timeout`` after the last one is still in
        time (as a PIN exactly ``pin_timeout`` after its card is, rules.md).
        """
        if self._state is State.TYPING and now - self._last_key_at > self.inter_key_timeout:
            outcome = self._step(Key.STALE, None)
            return [outcome] if outcome is not None else []
        return []

    def reset(self) -> None:
        """Drop any partial code without an outcome (the reader went offline)."""
        self._wipe()
        self._state = State.IDLE

    def _classify(self, byte: int) -> Key:
        if byte in _DIGIT_BYTES:
            return Key.DIGIT if len(self._digits) < MAX_DIGITS else Key.EXTRA_DIGIT
        if byte in _SUBMIT_BYTES:
            return Key.SUBMIT
        if byte in _CLEAR_BYTES:
            return Key.CLEAR
        return Key.JUNK

    def _step(self, key: Key, byte: int | None) -> EntryOutcome | None:
        next_state, kind = TRANSITIONS[(self._state, key)]
        outcome: EntryOutcome | None = None
        if kind is CodeEntered:
            outcome = CodeEntered(self._digits.decode("ascii"))
        elif kind is EntryCleared:
            outcome = EntryCleared()
        elif kind is EntryTimedOut:
            outcome = EntryTimedOut()
        elif kind is EntryRejected:
            outcome = EntryRejected(
                f"code longer than {MAX_DIGITS} digits" if key is Key.EXTRA_DIGIT
                else f"keypad sent a byte that is no key (0x{byte or 0:02x})")
        elif key is Key.DIGIT and byte is not None:
            self._digits.append(byte)
        if next_state is State.IDLE:
            self._wipe()
        self._state = next_state
        return outcome

    def _wipe(self) -> None:
        """Overwrite the digits before letting go of them."""
        self._digits[:] = bytes(len(self._digits))
        self._digits.clear()
