"""Which state a door is in at a moment, and what set it.

Pure: no clock, no I/O. The caller passes the instant, the site's zone and the
runtime facts (lockdown, an active override); this module only applies the
rules of the contract (rules.md section 2):

    lockdown > timed override > exception > schedule window > access_controlled

Everything is judged on the site's wall clock, in whole minutes. Windows and
exceptions are ``[start, end)`` in minutes after local midnight; ``end <= start``
runs past midnight and the part after midnight belongs to the start day (so
``start == end`` is a full 24 hours from ``start``). Because an instant is first
turned into local wall time, DST needs no special case: the hour skipped in
spring never occurs, and the hour repeated in autumn is inside a window both
times it is lived through.

Exception repeats, decided here and documented for operators:

- ``none``: the exception's ``date`` only;
- ``weekly``: every 7 days from ``date``;
- ``monthly``: the same day of the month as ``date``, in months that have that
  day (an exception on the 31st does not occur in April; it is not moved);
- ``yearly``: the same month and day as ``date``, in years that have it (a
  29 February exception occurs in leap years only);

always from ``date`` through ``until`` inclusive, judged by the date an
occurrence starts on (an overnight occurrence that starts on ``until`` still
runs its after-midnight part).

Overlap checks (used by the site loader to reject a door whose exceptions, or
whose schedule windows, could both cover one moment) are judged on the wall
clock too, independently of any zone: two windows that share a wall-clock
minute on some date overlap even if that minute falls into a DST gap on that
particular date, since the next tzdata release could move the gap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from passbridge.core.decision import ResolvedState
from passbridge.core.model import (
    MINUTES_PER_DAY,
    WEEKDAYS,
    Door,
    DoorException,
    DoorState,
    Repeat,
    ScheduleWindow,
)
from passbridge.core.policy import OVERRIDE_MINUTES_RANGE

MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
# The Gregorian calendar (weekdays and leap years together) repeats every 400 years.
_GREGORIAN_CYCLE_DAYS = 146_097
# Without weekdays, only month lengths matter; any 9 consecutive years hold every
# kind of year (a leap year is never more than 8 years away, even around 2100).
_MONTH_PATTERN_DAYS = 9 * 366
_MIN_ORDINAL = date.min.toordinal() + 1
_MAX_ORDINAL = date.max.toordinal() - 1




def override_minutes_problem(minutes: object) -> str | None:
    """Why ``minutes`` cannot be an override's length, or None.

    The one rule for the admin API, scenario ``configure`` steps and the
    engine: a whole number (a JSON or YAML integer) in OVERRIDE_MINUTES_RANGE.
    """
    least, most = OVERRIDE_MINUTES_RANGE
    if isinstance(minutes, bool) or not isinstance(minutes, int):
        return f"expected whole minutes from {least} to {most}"
    if not least <= minutes <= most:
        return f"expected whole minutes from {least} to {most}; got {minutes}"
    return None


@dataclass(frozen=True)
class Override:
    """A timed manual state set by an admin.

    The engine decides whether it is still active (by elapsed time, so a wall
    clock jump cannot extend or cut it) and only passes active ones here;
    ``ends_at`` is for display.
    """

    state: DoorState
    ends_elapsed: float
    ends_at: datetime


def resolve_state(
    door: Door,
    tz: ZoneInfo,
    at: datetime,
    *,
    lockdown: bool,
    override: Override | None,
) -> ResolvedState:
    """The door's state at the instant ``at`` (timezone-aware), first match wins."""
    if lockdown:
        return ResolvedState(DoorState.LOCKED, "lockdown")
    if override is not None:
        return ResolvedState(override.state, "override")
    if at.tzinfo is None or at.utcoffset() is None:
        # A naive instant would be read in the host's zone: refuse rather than guess.
        raise ValueError("resolve_state needs a timezone-aware instant")
    local = at.astimezone(tz)
    day = local.date()
    minute = local.hour * 60 + local.minute
    for exc in door.exceptions:
        if exception_covers(exc, day, minute):
            return ResolvedState(exc.state, f"exception:{exc.id}")
    for window in door.schedule:
        if window_covers(window, day, minute):
            return ResolvedState(window.state, f"schedule:{window.name}")
    return ResolvedState(DoorState.ACCESS_CONTROLLED, "default")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MINUTE = timedelta(minutes=1)
_LAST_MICROSECOND = timedelta(seconds=59, microseconds=999_999)


def utc_minute(at: datetime) -> int:
    """Whole minutes from the epoch to the aware instant ``at`` (exact: no float)."""
    return (at - _EPOCH) // _ONE_MINUTE


def minute_is_uniform(minute: int, tz: ZoneInfo) -> bool:
    """Whether all of UTC minute ``minute`` is one single local minute in ``tz``.

    True unless the zone's offset is not a whole number of minutes (old
    local mean times) or changes inside that minute. Where it holds, a
    door's resolved state is the same for every instant of the minute
    (the rules only look at the local date and minute), so a caller may
    resolve once per UTC minute and reuse the answer.
    """
    start = _EPOCH + minute * _ONE_MINUTE
    first = start.astimezone(tz).utcoffset()
    last = (start + _LAST_MICROSECOND).astimezone(tz).utcoffset()
    return first is not None and first == last and not first % _ONE_MINUTE


# Seconds never matter: with whole-minute bounds, t >= start and t < end hold for
# a time t exactly when they hold for t rounded down to its minute.


def window_covers(window: ScheduleWindow, day: date, minute: int) -> bool:
    """Whether the weekly window covers wall time ``minute`` on local ``day``."""
    if not window.overnight:
        return day.weekday() in window.days and window.start <= minute < window.end
    if minute >= window.start and day.weekday() in window.days:
        return True
    # The after-midnight part belongs to the day before.
    return minute < window.end and (day.weekday() - 1) % 7 in window.days


def exception_occurs_on(exc: DoorException, day: date) -> bool:
    """Whether an occurrence of the exception starts on local ``day``."""
    if day < exc.date or (exc.until is not None and day > exc.until):
        return False
    if exc.repeat is Repeat.NONE:
        return day == exc.date
    if exc.repeat is Repeat.WEEKLY:
        return (day - exc.date).days % 7 == 0
    if exc.repeat is Repeat.MONTHLY:
        return day.day == exc.date.day
    return (day.month, day.day) == (exc.date.month, exc.date.day)


def exception_covers(exc: DoorException, day: date, minute: int) -> bool:
    """Whether an occurrence of the exception covers wall time ``minute`` on ``day``."""
    if not exc.overnight:
        return exc.start <= minute < exc.end and exception_occurs_on(exc, day)
    if minute >= exc.start and exception_occurs_on(exc, day):
        return True
    return minute < exc.end and exception_occurs_on(exc, day - timedelta(days=1))


def two_factor_lacks(door: Door) -> str | None:
    """What a door lacks for two-factor entry (for error messages), or None."""
    if door.reader and door.keypad:
        return None
    if door.reader:
        return "no keypad"
    if door.keypad:
        return "no badge reader"
    return "neither a badge reader nor a keypad"


# --- overlap checks (configuration time) -------------------------------------


def _span(start: int, end: int) -> tuple[int, int]:
    """A window's minutes relative to its start day's midnight."""
    return (start, end) if end > start else (start, end + MINUTES_PER_DAY)


def _week_intervals(window: ScheduleWindow) -> list[tuple[int, int]]:
    """The window as half-open intervals on the week's minute axis (Monday 00:00 = 0)."""
    lo, hi = _span(window.start, window.end)
    out: list[tuple[int, int]] = []
    for day in sorted(window.days):
        a, b = day * MINUTES_PER_DAY + lo, day * MINUTES_PER_DAY + hi
        if b <= MINUTES_PER_WEEK:
            out.append((a, b))
        else:  # Sunday night runs into Monday morning
            out.append((a, MINUTES_PER_WEEK))
            out.append((0, b - MINUTES_PER_WEEK))
    return out


def windows_overlap(a: ScheduleWindow, b: ScheduleWindow) -> tuple[str, int] | None:
    """A wall-clock moment (weekday name, minute) both windows cover, or None.

    The earliest such moment in the week from Monday 00:00.
    """
    first: int | None = None
    for a_lo, a_hi in _week_intervals(a):
        for b_lo, b_hi in _week_intervals(b):
            lo = max(a_lo, b_lo)
            if lo < min(a_hi, b_hi) and (first is None or lo < first):
                first = lo
    if first is None:
        return None
    return WEEKDAYS[first // MINUTES_PER_DAY], first % MINUTES_PER_DAY


def exceptions_overlap(a: DoorException, b: DoorException) -> tuple[date, int] | None:
    """A wall-clock moment (local date, minute) both exceptions cover, or None.

    Repeats and ``until`` are taken into account without enumerating every day:
    occurrences of ``b`` that can meet an occurrence of ``a`` start the day
    before, the same day or the day after (no occurrence lasts over 24 hours),
    and the search per offset is bounded by the calendar's period.
    """
    a_lo, a_hi = _span(a.start, a.end)
    b_lo, b_hi = _span(b.start, b.end)
    best: tuple[date, int] | None = None
    for shift in (-1, 0, 1):  # b's occurrence starts `shift` days after a's
        lo = max(a_lo, b_lo + shift * MINUTES_PER_DAY)
        hi = min(a_hi, b_hi + shift * MINUTES_PER_DAY)
        if lo >= hi:
            continue
        day = _first_common_day(a, b, shift)
        if day is None:
            continue
        moment = (day + timedelta(days=lo // MINUTES_PER_DAY), lo % MINUTES_PER_DAY)
        if best is None or moment < best:
            best = moment
    return best


def _first_common_day(a: DoorException, b: DoorException, shift: int) -> date | None:
    """The first day ``d`` with ``a`` occurring on ``d`` and ``b`` on ``d + shift``."""
    lo = max(a.date.toordinal(), b.date.toordinal() - shift, _MIN_ORDINAL)
    hi = _MAX_ORDINAL
    if a.until is not None:
        hi = min(hi, a.until.toordinal())
    if b.until is not None:
        hi = min(hi, b.until.toordinal() - shift)
    if lo > hi:
        return None
    step = timedelta(days=shift)

    def both(d: date) -> bool:
        return exception_occurs_on(a, d) and exception_occurs_on(b, d + step)

    if a.repeat is Repeat.NONE:
        return a.date if lo <= a.date.toordinal() <= hi and both(a.date) else None
    if b.repeat is Repeat.NONE:
        d = b.date - step
        return d if lo <= d.toordinal() <= hi and both(d) else None
    if a.repeat is Repeat.WEEKLY and b.repeat is Repeat.WEEKLY:
        # Both are residues modulo 7: only the first candidate needs checking.
        first = lo + (a.date.toordinal() - lo) % 7
        if first > hi or not both(date.fromordinal(first)):
            return None
        return date.fromordinal(first)
    weekly = Repeat.WEEKLY in (a.repeat, b.repeat)
    hi = min(hi, lo + (_GREGORIAN_CYCLE_DAYS + 7 if weekly else _MONTH_PATTERN_DAYS))
    # Walk the sparser series and test the other at each of its occurrences.
    if _sparseness(b) > _sparseness(a):
        for d in _occurrences(b, lo + shift, hi + shift):
            if exception_occurs_on(a, d - step):
                return d - step
        return None
    for d in _occurrences(a, lo, hi):
        if exception_occurs_on(b, d + step):
            return d
    return None


def _sparseness(exc: DoorException) -> int:
    return {Repeat.WEEKLY: 1, Repeat.MONTHLY: 2, Repeat.YEARLY: 3}.get(exc.repeat, 4)


def _occurrences(exc: DoorException, lo: int, hi: int) -> Iterator[date]:
    """Start days of the exception's occurrences with ordinals in ``[lo, hi]``."""
    lo = max(lo, exc.date.toordinal())
    if exc.until is not None:
        hi = min(hi, exc.until.toordinal())
    if lo > hi:
        return
    start = exc.date
    if exc.repeat is Repeat.NONE:
        yield start
    elif exc.repeat is Repeat.WEEKLY:
        for ordinal in range(lo + (start.toordinal() - lo) % 7, hi + 1, 7):
            yield date.fromordinal(ordinal)
    else:
        first = date.fromordinal(lo)
        if exc.repeat is Repeat.MONTHLY:
            month_index = first.year * 12 + first.month - 1
            last_index = date.fromordinal(hi).year * 12 + 11
            candidates = ((i // 12, i % 12 + 1) for i in range(month_index, last_index + 1))
        else:
            last_year = date.fromordinal(hi).year
            candidates = ((y, start.month) for y in range(first.year, last_year + 1))
        for year, month in candidates:
            try:
                d = date(year, month, start.day)
            except ValueError:  # the 31st in a short month, 29 February in a common year
                continue
            ordinal = d.toordinal()
            if ordinal > hi:
                return
            if ordinal >= lo:
                yield d
