"""A loaded scenario: validated steps with their times resolved."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from passbridge.core.model import Side, Site

ACTIONS: tuple[str, ...] = ("card", "pin", "nfc", "ble", "nearby", "remote", "configure")


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    place: str  # ``steps[3]``, for messages
    at: datetime | None  # absolute instant (UTC) from ``at``
    after: float | None  # seconds from ``after``
    action: str
    args: dict[str, Any]
    side: Side
    # Only the keys the author wrote: result, reason, user, state.
    expect: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Scenario:
    file: str
    name: str
    site: Site
    steps: tuple[Step, ...]
    # Phones named in steps but enrolled to nobody: they get keys, no enrolment.
    stranger_phones: frozenset[str] = field(default_factory=frozenset)
