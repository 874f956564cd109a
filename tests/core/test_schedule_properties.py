"""Property tests: state resolution and overlap checks against a deliberately naive reference.

The reference works with naive local datetimes and plain enumeration of every
occurrence (no minute arithmetic, no modular weekday tricks, no search
bounds), so a shared mistake in reasoning is unlikely to hide in both.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from passbridge.core.model import Door, DoorException, DoorState, Repeat, ScheduleWindow
from passbridge.core.schedule import exceptions_overlap, resolve_state, windows_overlap

ZONES = (
    "America/Los_Angeles",
    "Europe/Berlin",
    "Australia/Adelaide",  # +9:30 / +10:30, southern-hemisphere DST
    "America/St_Johns",  # -3:30 / -2:30
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Asia/Kolkata",  # +5:30, no DST
    "Asia/Kathmandu",  # +5:45
    "UTC",
)
FIRST, LAST = datetime(2026, 1, 1, tzinfo=UTC), datetime(2029, 12, 31, tzinfo=UTC)
DAY = timedelta(days=1)


@cache
def transitions(zone: str) -> tuple[datetime, ...]:
    """UTC instants where the zone's offset changes, found by scanning and bisecting."""
    tz = ZoneInfo(zone)
    found: list[datetime] = []
    step = timedelta(hours=6)
    at = FIRST
    while at < LAST:
        nxt = at + step
        if at.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            lo, hi = at, nxt
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
                    lo = mid
                else:
                    hi = mid
            found.append(hi)
        at = nxt
    return tuple(found)


def test_the_zones_used_have_the_transitions_expected() -> None:
    assert len(transitions("Europe/Berlin")) == 8
    assert len(transitions("Australia/Lord_Howe")) == 8
    assert transitions("Asia/Kolkata") == () and transitions("UTC") == ()


# --- the reference --------------------------------------------------------------------


def span(day: date, start: int, end: int) -> tuple[datetime, datetime]:
    """A window or exception occurrence as naive wall-clock datetimes."""
    begin = datetime.combine(day, time()) + timedelta(minutes=start)
    length = (end - start) % 1440 or 1440
    return begin, begin + timedelta(minutes=length)


def occurrences(e: DoorException, last: date) -> list[date]:
    """Every start day of the exception up to ``last``, by plain enumeration."""
    stop = min(e.until, last) if e.until else last
    found: list[date] = []
    if e.repeat is Repeat.NONE:
        found = [e.date]
    elif e.repeat is Repeat.WEEKLY:
        d = e.date
        while d <= stop:
            found.append(d)
            d += timedelta(days=7)
    else:
        for year in range(e.date.year, stop.year + 1):
            months = range(1, 13) if e.repeat is Repeat.MONTHLY else [e.date.month]
            for month in months:
                try:
                    found.append(date(year, month, e.date.day))
                except ValueError:
                    pass
    return [d for d in found if e.date <= d <= stop]


def reference_state(door: Door, tz: ZoneInfo, at: datetime) -> tuple[DoorState, str]:
    wall = at.astimezone(tz).replace(tzinfo=None, fold=0)
    for e in door.exceptions:
        for d in occurrences(e, wall.date()):
            begin, end = span(d, e.start, e.end)
            if begin <= wall < end:
                return e.state, f"exception:{e.id}"
    for w in door.schedule:
        for d in (wall.date() - DAY, wall.date()):
            begin, end = span(d, w.start, w.end)
            if d.weekday() in w.days and begin <= wall < end:
                return w.state, f"schedule:{w.name}"
    return DoorState.ACCESS_CONTROLLED, "default"


# --- strategies ---------------------------------------------------------------------

# Minutes with a bias to the small hours, where DST changes happen, and to the edges.
minutes = st.one_of(
    st.integers(0, 1439),
    st.sampled_from([0, 30, 60, 90, 120, 150, 180, 210, 1410]),
    st.integers(0, 4 * 60),
)
ends = st.one_of(minutes, st.just(1440))
states = st.sampled_from(list(DoorState))
repeats = st.sampled_from(list(Repeat))


@st.composite
def windows(draw: st.DrawFn, name: str) -> ScheduleWindow:
    start = draw(minutes)
    end = draw(ends)
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    return ScheduleWindow(name=name, days=days, start=start, end=end, state=draw(states))


@st.composite
def exceptions(draw: st.DrawFn, ident: str, near: date, bounded: bool = False) -> DoorException:
    first = near + timedelta(days=draw(st.integers(-400, 2)))
    if draw(st.integers(0, 3)) == 0:  # ends of months and leap days
        first = draw(st.sampled_from([date(2025, 1, 31), date(2024, 2, 29), date(2025, 3, 30),
                                      date(2025, 12, 31), date(2026, 2, 28)]))
    until = None
    if bounded or draw(st.booleans()):
        until = first + timedelta(days=draw(st.integers(0, 800)))
    return DoorException(id=ident, date=first, start=draw(minutes), end=draw(ends),
                         state=draw(states), repeat=draw(repeats), until=until)


@st.composite
def instants(draw: st.DrawFn, zone: str) -> datetime:
    near = transitions(zone)
    if near and draw(st.booleans()):
        base = draw(st.sampled_from(near))
        return base + timedelta(seconds=draw(st.integers(-3 * 3600, 3 * 3600)))
    seconds = int((LAST - FIRST).total_seconds())
    return FIRST + timedelta(seconds=draw(st.integers(0, seconds)))


# --- properties -----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_resolve_state_matches_the_reference(data: st.DataObject) -> None:
    zone = data.draw(st.sampled_from(ZONES))
    tz = ZoneInfo(zone)
    at = data.draw(instants(zone))
    near = at.astimezone(tz).date()
    door = Door(
        id="d",
        schedule=tuple(data.draw(windows(str(i))) for i in range(data.draw(st.integers(0, 3)))),
        exceptions=tuple(data.draw(exceptions(f"e{i}", near))
                         for i in range(data.draw(st.integers(0, 3)))),
    )
    got = resolve_state(door, tz, at, lockdown=False, override=None)
    assert (got.state, got.source) == reference_state(door, tz, at)


def week_minutes(w: ScheduleWindow) -> set[int]:
    covered: set[int] = set()
    length = (w.end - w.start) % 1440 or 1440
    for day in w.days:
        for m in range(length):
            covered.add((day * 1440 + w.start + m) % (7 * 1440))
    return covered


@settings(max_examples=150, deadline=None)
@given(a=windows("a"), b=windows("b"))
def test_windows_overlap_matches_brute_force(a: ScheduleWindow, b: ScheduleWindow) -> None:
    shared = week_minutes(a) & week_minutes(b)
    got = windows_overlap(a, b)
    if not shared:
        assert got is None
        return
    first = min(shared)
    names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    assert got == (names[first // 1440], first % 1440)


def first_shared_moment(a: DoorException, b: DoorException, last: date) -> datetime | None:
    """The earliest wall moment both cover, among occurrences starting up to ``last``."""
    b_days = set(occurrences(b, last))
    best: datetime | None = None
    for d in occurrences(a, last):
        a_begin, a_end = span(d, a.start, a.end)
        for other in (d - DAY, d, d + DAY):
            if other not in b_days:
                continue
            b_begin, b_end = span(other, b.start, b.end)
            begin = max(a_begin, b_begin)
            if begin < min(a_end, b_end) and (best is None or begin < best):
                best = begin
    return best


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_exceptions_overlap_matches_enumeration(data: st.DataObject) -> None:
    near = date(2027, 6, 1)
    bounded = data.draw(st.booleans())
    a = data.draw(exceptions("a", near, bounded))
    b = data.draw(exceptions("b", near, bounded))
    # Bounded: the enumeration sees every occurrence. Unbounded: it sees 30 years.
    horizon = max(a.date, b.date) + timedelta(days=30 * 366)
    if a.until and b.until:
        horizon = max(a.until, b.until) + timedelta(days=2)
    expected = first_shared_moment(a, b, horizon)
    got = exceptions_overlap(a, b)
    if expected is not None:
        assert got == (expected.date(), expected.hour * 60 + expected.minute)
        assert exceptions_overlap(b, a) == got
        return
    if got is None:
        return
    # Found beyond the enumeration's horizon: check that both really cover that moment.
    assert got[0] > horizon - DAY
    moment = datetime.combine(got[0], time()) + timedelta(minutes=got[1])
    for e in (a, b):
        assert any(begin <= moment < end for begin, end in
                   (span(d, e.start, e.end) for d in occurrences(e, got[0])))
