"""The one injectable clock.

Two readings are kept apart on purpose: ``now()`` is the wall-clock instant
(UTC) that schedules, token ``exp`` claims and audit timestamps are about;
``elapsed()`` is a monotonic count of seconds that durations (PIN timeout,
lockout, unlock time, proximity age) are measured in, so that an NTP step or
a DST change never stretches or shrinks a timeout.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Moment:
    """One reading of the clock: the wall instant and the monotonic seconds."""

    utc: datetime
    elapsed: float


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...

    def elapsed(self) -> float:
        """Monotonic seconds; only differences mean anything."""
        ...

    def moment(self) -> Moment: ...


class SystemClock:
    """Production clock: wall time from the OS, durations from time.monotonic."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def elapsed(self) -> float:
        return time.monotonic()

    def moment(self) -> Moment:
        return Moment(self.now(), self.elapsed())


class ManualClock:
    """A clock that only moves when told to: scenarios and tests.

    Elapsed seconds are the true seconds since the clock was made, so setting
    the wall time forward (a scenario ``at``) also advances durations, and
    time can never be set backwards.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._start = start.astimezone(UTC)
        self._now = self._start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def elapsed(self) -> float:
        with self._lock:
            return (self._now - self._start).total_seconds()

    def moment(self) -> Moment:
        with self._lock:
            return Moment(self._now, (self._now - self._start).total_seconds())

    def set(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("ManualClock.set needs a timezone-aware instant")
        instant = instant.astimezone(UTC)
        with self._lock:
            if instant < self._now:
                raise ValueError(f"time cannot go backwards: {instant} < {self._now}")
            self._now = instant

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        with self._lock:
            self._now = self._now + timedelta(seconds=seconds)
