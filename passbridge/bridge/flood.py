"""Limits on what an unauthenticated radio can make a reader do and write.

A hostile card (or a Bluetooth device rotating its id) can present itself
to a reader thousands of times a minute. Each failed authentication used to
be an fsynced audit row, a log line, and a full run of the key agreement.
This module is the one small piece both radios use to bound that:

- :class:`TokenBucket`: a per-reader rate limit on failed authentication
  attempts; once empty, the reader pauses before it looks for the next card.
- :class:`FloodGate`: one audited record per hostile *burst* per reader and
  kind; the rest of the burst is counted and summarised in periodic
  ``device`` records. Only unauthenticated events go through it: a phone
  that authenticated is always decided and audited.
- :class:`RateLimitFilter`: the same idea for log lines (nfcpy retries,
  garbage frames): a few lines per burst, then one line saying how many
  similar lines were dropped.

Pure logic on an injectable clock (``elapsed()`` seconds), thread safe:
the NFC reader thread and the event loop both call in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from passbridge.clock import Clock

__all__ = [
    "FloodGate",
    "FloodSettings",
    "RADIO_LOGGERS",
    "RateLimitFilter",
    "TokenBucket",
    "limit_radio_logs",
]


@dataclass(frozen=True, slots=True)
class FloodSettings:
    """The numbers, documented in docs/decisions.md ("Hostile radios").

    A burst is a run of unauthenticated events at one reader with less than
    ``quiet`` seconds between two of them. Its first event is audited; the
    others are counted and written as a summary every ``summary_every``
    seconds while the burst lasts, and once when it ends.
    """

    auth_rate: float = 2.0
    """Failed authentications per second a reader keeps accepting."""
    auth_burst: int = 10
    """Failed authentications a reader accepts back to back before pacing."""
    quiet: float = 10.0
    summary_every: float = 60.0

    def __post_init__(self) -> None:
        if self.auth_rate <= 0 or self.auth_burst < 1 or self.quiet <= 0 \
                or self.summary_every <= 0:
            raise ValueError("flood settings must be positive")


class TokenBucket:
    """``rate`` tokens a second, at most ``capacity`` saved up."""

    def __init__(self, rate: float, capacity: int, clock: Clock) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("a token bucket needs a positive rate and capacity")
        self._rate = rate
        self._capacity = float(capacity)
        self._clock = clock
        self._tokens = float(capacity)
        self._at = clock.elapsed()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock.elapsed()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now

    def take(self) -> float:
        """Spend one token; return how long to wait before the next one is there (0: none)."""
        with self._lock:
            self._refill()
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            # In debt: the caller pauses until the debt is paid back.
            return -self._tokens / self._rate

    def try_take(self) -> float:
        """Spend one token if one is there (0.0); else spend nothing and return
        how long until one is. A caller refused now is not pushed further back
        by its own retries, so a flood cannot lock out everybody for ever."""
        with self._lock:
            self._refill()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self._rate


@dataclass(slots=True)
class _Burst:
    started: float
    last: float
    started_at: str
    reported_until: float
    suppressed: int = 0
    details: dict[str, int] = field(default_factory=dict)


class FloodGate:
    """One reader's audit budget for unauthenticated events, by kind.

    :meth:`admit` says whether an event is audited now (the first of a
    burst) or counted; :meth:`summaries` returns the ``device`` payloads
    that are due (call it periodically and at shutdown with ``final=True``).
    """

    def __init__(self, where: dict[str, str], clock: Clock,
                 settings: FloodSettings | None = None,
                 on_suppressed: Callable[[str], None] | None = None) -> None:
        self.settings = settings or FloodSettings()
        self._on_suppressed = on_suppressed
        self._where = dict(where)
        self._clock = clock
        self._bursts: dict[str, _Burst] = {}
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.suppressed_total = 0

    def admit(self, kind: str, detail: str = "") -> bool:
        """True: record this event now. False: it was counted for the summary."""
        now = self._clock.elapsed()
        with self._lock:
            burst = self._bursts.get(kind)
            if burst is None or now - burst.last >= self.settings.quiet:
                if burst is not None and burst.suppressed:
                    # The old burst ended with counts not written yet.
                    self._pending.append(self._payload(kind, burst, ended=True))
                self._bursts[kind] = _Burst(now, now, self._clock.now().isoformat(), now)
                return True
            burst.last = now
            burst.suppressed += 1
            burst.details[detail] = burst.details.get(detail, 0) + 1
            self.suppressed_total += 1
        if self._on_suppressed is not None:
            self._on_suppressed(kind)
        return False

    def _payload(self, kind: str, burst: _Burst, *, ended: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            **self._where,
            "event": f"{kind}_summary",
            "burst_started": burst.started_at,
            "burst_seconds": round(burst.last - burst.started, 3),
            "suppressed": burst.suppressed,
            "details": dict(sorted(burst.details.items())),
            "ended": ended,
            "at": self._clock.now().isoformat(),
        }
        burst.suppressed = 0
        burst.details = {}
        burst.reported_until = self._clock.elapsed()
        return payload

    def summaries(self, *, final: bool = False) -> list[dict[str, Any]]:
        """Summary payloads due now: bursts that ended or ran ``summary_every`` unreported."""
        now = self._clock.elapsed()
        out: list[dict[str, Any]] = []
        with self._lock:
            out.extend(self._pending)
            self._pending.clear()
            for kind, burst in list(self._bursts.items()):
                ended = final or now - burst.last >= self.settings.quiet
                due = now - burst.reported_until >= self.settings.summary_every
                if burst.suppressed and (ended or due):
                    out.append(self._payload(kind, burst, ended=ended))
                if ended:
                    del self._bursts[kind]
        return out

    def active(self, kind: str) -> bool:
        """A burst of this kind is going on (for health reports)."""
        now = self._clock.elapsed()
        with self._lock:
            burst = self._bursts.get(kind)
            return burst is not None and now - burst.last < self.settings.quiet


class RateLimitFilter(logging.Filter):
    """Let ``burst`` lines per logger and message template through per ``per``
    seconds; the next line that passes says how many were dropped.

    Attach to a handler; only loggers named in ``names`` (and their children)
    are limited, everything else passes untouched. A traceback on a dropped
    record is dropped with it.
    """

    def __init__(self, names: tuple[str, ...], burst: int = 5, per: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        if burst < 1 or per <= 0:
            raise ValueError("a log rate limit needs a positive burst and period")
        self._names = names
        self._burst = burst
        self._per = per
        self._monotonic = monotonic
        self._windows: dict[tuple[str, str], tuple[float, int, int]] = {}
        self._lock = threading.Lock()

    def _limited(self, name: str) -> bool:
        return any(name == n or name.startswith(n + ".") for n in self._names)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._limited(record.name):
            return True
        key = (record.name, str(record.msg))
        now = self._monotonic()
        with self._lock:
            start, passed, dropped = self._windows.get(key, (now, 0, 0))
            if now - start >= self._per:
                start, passed = now, 0
            if passed >= self._burst:
                self._windows[key] = (start, passed, dropped + 1)
                return False
            self._windows[key] = (start, passed + 1, 0)
        if dropped:
            record.msg = f"{record.msg} ({dropped} similar lines suppressed)"
        return True


RADIO_LOGGERS = ("nfc", "passbridge.adapters", "passbridge.bridge", "passbridge.service.hardware",
                 "bleak", "bumble")
"""The loggers a radio in the field can make talk (``serve`` limits them)."""


def limit_radio_logs(burst: int = 5, per: float = 60.0) -> RateLimitFilter:
    """Rate-limit radio log lines on every handler of the root logger."""
    limiter = RateLimitFilter(RADIO_LOGGERS, burst=burst, per=per)
    for handler in logging.getLogger().handlers:
        handler.addFilter(limiter)
    return limiter
