"""What the core answers, and what it is asked."""

from __future__ import annotations

import itertools
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from passbridge.core.model import DoorState, Factor, Reason, Result, Side

# Decision ids: a random 64-bit prefix per process, then a counter. An id only
# has to be unique (it keys the audit log) and not guessable from another
# process's ids; it is not a secret and grants nothing. A fresh prefix is
# drawn at import and again in a forked child, so two processes (or one
# process before and after a restart) collide only if two random 64-bit
# prefixes do. 128 fresh random bits per decision cost more than the rest of
# a card decision's bookkeeping. The shape is unchanged: 32 lowercase hex.
_id_prefix = ""
_id_counter = itertools.count()


def _reseed_decision_ids() -> None:
    global _id_prefix, _id_counter  # per-process state, by design
    _id_prefix = secrets.token_hex(8)
    # next() on itertools.count is atomic under the GIL: no lock needed.
    _id_counter = itertools.count()


_reseed_decision_ids()
os.register_at_fork(after_in_child=_reseed_decision_ids)


def new_decision_id() -> str:
    """A unique decision id, 32 hex characters (see above)."""
    return f"{_id_prefix}{next(_id_counter):016x}"


@dataclass(frozen=True, slots=True)
class ResolvedState:
    """A door's state at a moment, and what set it.

    ``source`` is one of ``lockdown``, ``override``, ``exception:<id>``,
    ``schedule:<window>`` or ``default``.
    """

    state: DoorState
    source: str


@dataclass(frozen=True, slots=True)
class Presentation:
    """One factor presented at one door side, as the core sees it.

    For a card, ``credential`` is the badge number; for a PIN, ``secret`` is
    the code (the core hashes it at once and never stores or logs it); for a
    mobile factor, ``user`` and ``credential`` come from a verified token and
    ``evidence`` is the token's ``ev`` claim.
    """

    factor: Factor
    door: str
    side: Side = Side.IN
    user: str | None = None
    credential: str | None = None
    secret: str | None = field(default=None, repr=False)
    evidence: dict[str, Any] = field(default_factory=dict)
    # Identifies the signed token (its jti) or other path evidence for audit.
    token_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    id: str
    result: Result
    reason: Reason
    door: str
    side: Side
    factor: Factor | None
    user: str | None
    # Safe to log: a phone credential id, or a masked badge number.
    credential: str | None
    state: DoorState | None
    state_source: str | None
    revision: str
    at: datetime
    unlock_seconds: int | None = None
    # Free-text detail for operators (never a secret), e.g. which check failed.
    detail: str | None = None

    @property
    def granted(self) -> bool:
        return self.result is Result.GRANTED

    def to_json(self) -> dict[str, Any]:
        """The decision shape of interfaces.md (plus factor, credential, detail)."""
        factor, state = self.factor, self.state
        return {
            "decision_id": self.id,
            "result": ENUM_TEXT[self.result],
            "reason": ENUM_TEXT[self.reason],
            "door": self.door,
            "side": ENUM_TEXT[self.side],
            "user": self.user,
            "factor": ENUM_TEXT[factor] if factor else None,
            "credential": self.credential,
            "state": ENUM_TEXT[state] if state else None,
            "state_source": self.state_source,
            "unlock_seconds": self.unlock_seconds,
            "revision": self.revision,
            "at": self.at.isoformat(),
            "detail": self.detail,
        }


# Each member of the enums a Decision holds -> its value as a plain str. The
# same text as ``member.value``, which on Python 3.11 is a property costing a
# third of a microsecond each time; a decision is serialised on every answer,
# audit record and live event.
ENUM_TEXT: dict[Result | Reason | Side | Factor | DoorState, str] = {
    member: str(member.value) for enum in (Result, Reason, Side, Factor, DoorState)
    for member in enum
}
