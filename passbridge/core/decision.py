"""What the core answers, and what it is asked."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from passbridge.core.model import DoorState, Factor, Reason, Result, Side


def new_decision_id() -> str:
    """128 random bits, hex: unique without coordination between processes."""
    return secrets.token_hex(16)


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
        return {
            "decision_id": self.id,
            "result": self.result.value,
            "reason": self.reason.value,
            "door": self.door,
            "side": self.side.value,
            "user": self.user,
            "factor": self.factor.value if self.factor else None,
            "credential": self.credential,
            "state": self.state.value if self.state else None,
            "state_source": self.state_source,
            "unlock_seconds": self.unlock_seconds,
            "revision": self.revision,
            "at": self.at.isoformat(),
            "detail": self.detail,
        }
