"""What a wired reader shows and sounds for a decision: the one mapping.

A decision at a door side with an OSDP reader is answered at the reader
with LED and buzzer commands. This module is the only place that says which;
it is pure (plain data in, plain data out), and the OSDP adapter turns each
command 1:1 into a libosdp command dict (:meth:`LedCommand.osdp_fields`,
:meth:`BuzzerCommand.osdp_fields`, the osdp_LED and osdp_BUZ fields).

| decision | LED | buzzer |
|---|---|---|
| pending `pin_required` | amber, 0.5 s on / 0.5 s off, for `pin_timeout` | 1 short beep (0.1 s) |
| granted (any reason) | green steady for `unlock_seconds` | 1 short beep (0.2 s) |
| denied `locked_out` | red, 0.1 s on / 0.1 s off, for 5 s | 1 long beep (1 s) |
| denied (other reasons) | red steady for 2 s | 2 short beeps (0.1 s, 0.1 s apart) |
| :func:`cancel_waiting` | back to the reader's own (permanent) state | none |

Why these: amber for "go on, type your code" and green/red for yes/no are
what installers and users know from every door controller; the locked-out
pattern differs in both light and sound so that a user who is locked out
knows that trying again now is pointless (a plain red would invite more
tries). The grant's beep is for people who cannot see the LED.

Every pattern is a *temporary* LED state (osdp_LED temporary, with a timer):
the reader returns to its permanent state on its own when the time runs
out, and a new temporary command replaces the running one. So the waiting
pattern ends when the next decision at that reader is shown (the PIN's
grant or denial) or when the door's ``pin_timeout`` runs out at the reader,
without the panel having to remember anything; :func:`cancel_waiting` ends
it early (the pending card was dropped, the panel shuts down).

Times are in milliseconds and multiples of 100 (OSDP counts in 100 ms
units); the constructors check that and the field ranges, so a command
that the wire cannot carry fails here, in a test, not at a door.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from passbridge.core.decision import Decision
from passbridge.core.model import Door, Reason, Result

__all__ = [
    "DENIAL_SHOW_MS",
    "LOCKED_OUT_SHOW_MS",
    "BuzzerCommand",
    "Feedback",
    "LedColor",
    "LedCommand",
    "ReaderCommand",
    "cancel_waiting",
    "feedback_for",
]

#: How long a plain denial stays red: long enough to be seen, short enough
#: that the next person does not read it as theirs.
DENIAL_SHOW_MS = 2000
#: How long the locked-out pattern runs.
LOCKED_OUT_SHOW_MS = 5000

_UNIT_MS = 100  # OSDP's time unit for LED and buzzer timing
_BYTE_MAX = 0xFF  # on/off times and repeat counts are one byte
_TIMER_MAX = 0xFFFF  # the LED timer is two bytes


class LedColor(IntEnum):
    """OSDP LED colour codes (osdp_LED; the values of libosdp's CommandLEDColor)."""

    BLACK = 0
    RED = 1
    GREEN = 2
    AMBER = 3
    BLUE = 4
    MAGENTA = 5
    CYAN = 6
    WHITE = 7


class _LedControl(IntEnum):
    """osdp_LED temporary control codes."""

    CANCEL = 1  # cancel any temporary state, show the permanent one
    SET = 2  # set the temporary state and start its timer


class _Tone(IntEnum):
    """osdp_BUZ tone codes."""

    OFF = 1
    DEFAULT = 2


def _units(ms: int, what: str, limit: int, *, zero_ok: bool = True) -> int:
    if ms % _UNIT_MS or not (0 if zero_ok else _UNIT_MS) <= ms <= limit * _UNIT_MS:
        raise ValueError(f"{what} {ms} ms: a multiple of {_UNIT_MS} ms, at most "
                         f"{limit * _UNIT_MS} ms")
    return ms // _UNIT_MS


@dataclass(frozen=True, slots=True)
class LedCommand:
    """One osdp_LED temporary-state command.

    ``color`` shows for ``on_ms``, then ``off_color`` for ``off_ms``, repeated
    until ``duration_ms`` ends (``off_ms`` 0: steady). ``cancel`` asks the
    reader to drop its temporary state instead (the other fields are unused).
    """

    color: LedColor
    on_ms: int
    off_ms: int
    duration_ms: int
    off_color: LedColor = LedColor.BLACK
    cancel: bool = False
    reader: int = 0
    led: int = 0

    def __post_init__(self) -> None:
        _units(self.on_ms, "LED on time", _BYTE_MAX, zero_ok=self.cancel)
        _units(self.off_ms, "LED off time", _BYTE_MAX)
        _units(self.duration_ms, "LED duration", _TIMER_MAX, zero_ok=self.cancel)

    def osdp_fields(self) -> dict[str, int | bool]:
        """The fields of libosdp's LED command dict (the caller adds ``command``)."""
        return {
            "reader": self.reader,
            "led_number": self.led,
            "temporary": True,
            "control_code": int(_LedControl.CANCEL if self.cancel else _LedControl.SET),
            "on_color": int(self.color),
            "off_color": int(self.off_color),
            "on_count": self.on_ms // _UNIT_MS,
            "off_count": self.off_ms // _UNIT_MS,
            "timer_count": self.duration_ms // _UNIT_MS,
        }


@dataclass(frozen=True, slots=True)
class BuzzerCommand:
    """One osdp_BUZ command: ``count`` beeps of ``on_ms``, ``off_ms`` apart."""

    on_ms: int
    off_ms: int
    count: int
    reader: int = 0

    def __post_init__(self) -> None:
        _units(self.on_ms, "beep length", _BYTE_MAX, zero_ok=False)
        _units(self.off_ms, "pause between beeps", _BYTE_MAX)
        if not 1 <= self.count <= _BYTE_MAX:
            raise ValueError(f"beep count {self.count}: 1 to {_BYTE_MAX}")

    def osdp_fields(self) -> dict[str, int]:
        """The fields of libosdp's buzzer command dict (the caller adds ``command``)."""
        return {
            "reader": self.reader,
            "control_code": int(_Tone.DEFAULT),
            "on_count": self.on_ms // _UNIT_MS,
            "off_count": self.off_ms // _UNIT_MS,
            "rep_count": self.count,
        }


ReaderCommand = LedCommand | BuzzerCommand


class Feedback(NamedTuple):
    """What a reader shows for one decision: one LED pattern, one beep pattern.

    Send the LED first: it replaces the running pattern at once."""

    led: LedCommand
    buzzer: BuzzerCommand


def feedback_for(decision: Decision, door: Door, *, reader: int = 0) -> Feedback:
    """The commands that show ``decision`` at the reader (the table above).

    ``door`` gives the waiting time (``pin_timeout``) and the unlock time when
    the decision does not carry one; ``reader`` is the reader number on its
    OSDP device (0 for the first).
    """
    if decision.result is Result.PENDING:
        return Feedback(
            LedCommand(LedColor.AMBER, on_ms=500, off_ms=500,
                       duration_ms=door.pin_timeout * 1000, reader=reader),
            BuzzerCommand(on_ms=100, off_ms=0, count=1, reader=reader),
        )
    if decision.result is Result.GRANTED:
        seconds = decision.unlock_seconds if decision.unlock_seconds else door.unlock_seconds
        return Feedback(
            LedCommand(LedColor.GREEN, on_ms=_UNIT_MS, off_ms=0, duration_ms=seconds * 1000,
                       reader=reader),
            BuzzerCommand(on_ms=200, off_ms=0, count=1, reader=reader),
        )
    if decision.reason is Reason.LOCKED_OUT:
        return Feedback(
            LedCommand(LedColor.RED, on_ms=100, off_ms=100, duration_ms=LOCKED_OUT_SHOW_MS,
                       reader=reader),
            BuzzerCommand(on_ms=1000, off_ms=0, count=1, reader=reader),
        )
    return Feedback(
        LedCommand(LedColor.RED, on_ms=_UNIT_MS, off_ms=0, duration_ms=DENIAL_SHOW_MS,
                   reader=reader),
        BuzzerCommand(on_ms=100, off_ms=100, count=2, reader=reader),
    )


def cancel_waiting(*, reader: int = 0) -> LedCommand:
    """End a waiting (or any temporary) pattern now: the reader shows its
    permanent state again."""
    return LedCommand(LedColor.BLACK, on_ms=0, off_ms=0, duration_ms=0, cancel=True,
                      reader=reader)
