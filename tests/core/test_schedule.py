"""Door state resolution: priority, overnight windows, DST, repeating exceptions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from passbridge.core.model import Door, DoorException, DoorState, Repeat, ScheduleWindow
from passbridge.core.schedule import (
    Override,
    exception_occurs_on,
    exceptions_overlap,
    resolve_state,
    two_factor_lacks,
    windows_overlap,
)

LA = ZoneInfo("America/Los_Angeles")
BERLIN = ZoneInfo("Europe/Berlin")
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def hm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def win(days: set[int], start: str, end: str, state: DoorState = DoorState.TWO_FACTOR,
        name: str = "w") -> ScheduleWindow:
    return ScheduleWindow(name=name, days=frozenset(days), start=hm(start), end=hm(end),
                          state=state)


def exc(on: date, start: str = "00:00", end: str = "24:00", state: DoorState = DoorState.LOCKED,
        repeat: Repeat = Repeat.NONE, until: date | None = None, ident: str = "x"
        ) -> DoorException:
    return DoorException(id=ident, date=on, start=hm(start), end=hm(end), state=state,
                         repeat=repeat, until=until)


def door(*, schedule: tuple[ScheduleWindow, ...] = (),
         exceptions: tuple[DoorException, ...] = ()) -> Door:
    return Door(id="front", keypad=True, schedule=schedule, exceptions=exceptions)


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    """A site-local wall time as the UTC instant the engine would pass."""
    return datetime(*args, tzinfo=tz, fold=fold).astimezone(UTC)  # type: ignore[misc]


def state_at(d: Door, at: datetime, tz: ZoneInfo = LA) -> tuple[str, str]:
    resolved = resolve_state(d, tz, at, lockdown=False, override=None)
    return resolved.state.value, resolved.source


# --- priority -------------------------------------------------------------------


def test_priority_lockdown_override_exception_schedule_default() -> None:
    office = win({MON}, "08:00", "18:00", DoorState.TWO_FACTOR, name="office")
    holiday = exc(date(2026, 11, 30), "12:00", "13:00", DoorState.UNLOCKED, ident="lunch")
    d = door(schedule=(office,), exceptions=(holiday,))
    at = local(LA, 2026, 11, 30, 12, 30)  # a Monday, inside both
    override = Override(DoorState.ACCESS_CONTROLLED, ends_elapsed=100.0,
                        ends_at=at + timedelta(minutes=30))

    def resolve(lockdown: bool, override: Override | None, when: datetime = at) -> tuple[str, str]:
        r = resolve_state(d, LA, when, lockdown=lockdown, override=override)
        return r.state.value, r.source

    assert resolve(True, override) == ("locked", "lockdown")
    assert resolve(False, override) == ("access_controlled", "override")
    assert resolve(False, None) == ("unlocked", "exception:lunch")
    assert resolve(False, None, local(LA, 2026, 11, 30, 9, 0)) == ("two_factor", "schedule:office")
    assert resolve(False, None, local(LA, 2026, 11, 30, 19, 0)) == ("access_controlled", "default")


def test_an_exception_beats_the_schedule_even_when_it_sets_access_controlled() -> None:
    d = door(schedule=(win({MON}, "00:00", "24:00"),),
             exceptions=(exc(date(2026, 11, 30), state=DoorState.ACCESS_CONTROLLED, ident="h"),))
    assert state_at(d, local(LA, 2026, 11, 30, 9)) == ("access_controlled", "exception:h")


def test_an_override_applies_to_a_door_without_schedule() -> None:
    at = local(LA, 2026, 11, 30, 9)
    r = resolve_state(door(), LA, at, lockdown=False,
                      override=Override(DoorState.UNLOCKED, 5.0, at))
    assert (r.state, r.source) == (DoorState.UNLOCKED, "override")


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        resolve_state(door(), LA, datetime(2026, 11, 30, 9), lockdown=False, override=None)


def test_the_zone_decides_the_local_day() -> None:
    # 2026-11-30 06:00 UTC is Monday in Berlin but still Sunday night in Los Angeles.
    d = door(schedule=(win({MON}, "00:00", "24:00", name="monday"),))
    at = datetime(2026, 11, 30, 6, tzinfo=UTC)
    assert state_at(d, at, BERLIN) == ("two_factor", "schedule:monday")
    assert state_at(d, at, LA) == ("access_controlled", "default")


# --- windows ------------------------------------------------------------------------


def test_window_bounds_are_start_inclusive_end_exclusive_to_the_second() -> None:
    d = door(schedule=(win({MON}, "08:00", "18:00"),))
    assert state_at(d, local(LA, 2026, 11, 30, 7, 59, 59))[1] == "default"
    assert state_at(d, local(LA, 2026, 11, 30, 8, 0, 0))[1] == "schedule:w"
    assert state_at(d, local(LA, 2026, 11, 30, 17, 59, 59))[1] == "schedule:w"
    assert state_at(d, local(LA, 2026, 11, 30, 18, 0, 0))[1] == "default"


def test_friday_overnight_window_covers_saturday_morning_only() -> None:
    d = door(schedule=(win({FRI}, "22:00", "06:00"),))
    assert state_at(d, local(LA, 2026, 12, 4, 21, 59))[1] == "default"  # Friday
    assert state_at(d, local(LA, 2026, 12, 4, 23, 0))[1] == "schedule:w"
    assert state_at(d, local(LA, 2026, 12, 5, 3, 0))[1] == "schedule:w"  # Saturday
    assert state_at(d, local(LA, 2026, 12, 5, 6, 0))[1] == "default"
    assert state_at(d, local(LA, 2026, 12, 4, 3, 0))[1] == "default"  # Friday morning: Thursday's
    assert state_at(d, local(LA, 2026, 12, 5, 23, 0))[1] == "default"  # Saturday night


def test_sunday_overnight_window_runs_into_monday() -> None:
    d = door(schedule=(win({SUN}, "22:00", "06:00"),))
    assert state_at(d, local(LA, 2026, 11, 30, 3, 0))[1] == "schedule:w"  # Monday
    assert state_at(d, local(LA, 2026, 11, 29, 3, 0))[1] == "default"  # Sunday morning


def test_end_24_00_runs_to_midnight_and_no_further() -> None:
    d = door(schedule=(win({MON}, "18:00", "24:00"),))
    assert state_at(d, local(LA, 2026, 11, 30, 23, 59, 59))[1] == "schedule:w"
    assert state_at(d, local(LA, 2026, 12, 1, 0, 0))[1] == "default"


def test_start_equal_to_end_is_a_full_day_from_start() -> None:
    d = door(schedule=(win({MON}, "09:00", "09:00"),))
    assert state_at(d, local(LA, 2026, 11, 30, 8, 59))[1] == "default"
    assert state_at(d, local(LA, 2026, 11, 30, 9, 0))[1] == "schedule:w"
    assert state_at(d, local(LA, 2026, 12, 1, 8, 59))[1] == "schedule:w"
    assert state_at(d, local(LA, 2026, 12, 1, 9, 0))[1] == "default"


# --- DST -----------------------------------------------------------------------------


def test_los_angeles_spring_forward_skips_the_gap_hour() -> None:
    # 2027-03-14 (Sunday): 02:00 PST becomes 03:00 PDT.
    gap = door(schedule=(win({SUN}, "02:00", "03:00", name="gap"),))
    around = door(schedule=(win({SUN}, "01:00", "04:00", name="around"),))
    start = datetime(2027, 3, 14, 7, tzinfo=UTC)  # 23:00 Saturday local
    covered = [start + timedelta(minutes=m) for m in range(0, 8 * 60)
               if state_at(gap, start + timedelta(minutes=m))[1] == "schedule:gap"]
    assert covered == []
    # 01:00-04:00 wall clock is only two real hours that night.
    hours = sum(1 for m in range(0, 8 * 60)
                if state_at(around, start + timedelta(minutes=m))[1] == "schedule:around")
    assert hours == 120
    # A week later the same window is three hours long again.
    later = datetime(2027, 3, 21, 7, tzinfo=UTC)
    assert sum(1 for m in range(0, 8 * 60)
               if state_at(around, later + timedelta(minutes=m))[1] != "default") == 180


def test_los_angeles_fall_back_hour_is_in_the_window_both_times() -> None:
    # 2026-11-01 (Sunday): 01:00-02:00 happens twice (PDT, then PST).
    d = door(schedule=(win({SUN}, "01:00", "02:00"),))
    first = local(LA, 2026, 11, 1, 1, 30, fold=0)
    second = local(LA, 2026, 11, 1, 1, 30, fold=1)
    assert second - first == timedelta(hours=1)
    assert state_at(d, first)[1] == state_at(d, second)[1] == "schedule:w"
    assert state_at(d, local(LA, 2026, 11, 1, 2, 0))[1] == "default"
    assert sum(1 for m in range(0, 6 * 60)
               if state_at(d, datetime(2026, 11, 1, 6, tzinfo=UTC) + timedelta(minutes=m))[1]
               != "default") == 120


def test_berlin_spring_and_fall() -> None:
    # 2027-03-28: 02:00 CET becomes 03:00 CEST (01:00 UTC). 2026-10-25: 03:00 back to 02:00.
    d = door(schedule=(win({SUN}, "02:00", "03:00", DoorState.UNLOCKED),))
    assert state_at(d, datetime(2027, 3, 28, 0, 59, tzinfo=UTC), BERLIN)[1] == "default"
    assert state_at(d, datetime(2027, 3, 28, 1, 0, tzinfo=UTC), BERLIN)[1] == "default"
    assert state_at(d, datetime(2026, 10, 25, 0, 30, tzinfo=UTC), BERLIN) == (
        "unlocked", "schedule:w")  # 02:30 CEST
    assert state_at(d, datetime(2026, 10, 25, 1, 30, tzinfo=UTC), BERLIN) == (
        "unlocked", "schedule:w")  # 02:30 CET
    assert state_at(d, datetime(2026, 10, 25, 2, 0, tzinfo=UTC), BERLIN)[1] == "default"


def test_an_overnight_window_across_a_dst_change_follows_the_wall_clock() -> None:
    # Saturday 22:00 to Sunday 06:00 over the spring change is 7 real hours in Berlin.
    d = door(schedule=(win({SAT}, "22:00", "06:00"),))
    start = datetime(2027, 3, 27, 18, tzinfo=UTC)
    minutes = sum(1 for m in range(0, 14 * 60)
                  if state_at(d, start + timedelta(minutes=m), BERLIN)[1] != "default")
    assert minutes == 7 * 60


# --- exceptions ---------------------------------------------------------------------


def test_non_repeating_exception_is_one_date() -> None:
    e = exc(date(2026, 12, 25))
    assert exception_occurs_on(e, date(2026, 12, 25))
    assert not exception_occurs_on(e, date(2027, 12, 25))
    assert not exception_occurs_on(e, date(2026, 12, 24))


def test_weekly_exception_from_date_until_inclusive() -> None:
    e = exc(date(2027, 1, 4), repeat=Repeat.WEEKLY, until=date(2027, 2, 1))
    assert [d.day for d in (date(2027, 1, 4) + timedelta(days=n) for n in range(-7, 40))
            if exception_occurs_on(e, d)] == [4, 11, 18, 25, 1]
    assert not exception_occurs_on(e, date(2027, 2, 8))


def test_monthly_exception_on_the_31st_skips_short_months() -> None:
    e = exc(date(2027, 1, 31), repeat=Repeat.MONTHLY)
    months = [m for m in range(1, 13) if any(
        exception_occurs_on(e, date(2027, m, 1) + timedelta(days=n)) for n in range(31)
        if (date(2027, m, 1) + timedelta(days=n)).month == m)]
    assert months == [1, 3, 5, 7, 8, 10, 12]
    assert not exception_occurs_on(e, date(2027, 4, 30))
    assert not exception_occurs_on(e, date(2027, 5, 1))


def test_yearly_exception_on_29_february_only_in_leap_years() -> None:
    e = exc(date(2028, 2, 29), repeat=Repeat.YEARLY)
    assert exception_occurs_on(e, date(2032, 2, 29))
    assert not any(exception_occurs_on(e, date(2029, 2, 28) + timedelta(days=n))
                   for n in range(3))
    assert not exception_occurs_on(e, date(2024, 2, 29))  # before its date


def test_yearly_exception_resolves_in_later_years_and_stops_after_until() -> None:
    e = exc(date(2026, 12, 25), repeat=Repeat.YEARLY, until=date(2028, 12, 31), ident="xmas")
    d = door(schedule=(win({FRI, SAT, MON}, "07:00", "19:00"),), exceptions=(e,))
    assert state_at(d, local(LA, 2027, 12, 25, 10)) == ("locked", "exception:xmas")
    assert state_at(d, local(LA, 2029, 12, 25, 10)) == ("access_controlled", "default")  # Tue
    assert state_at(d, local(LA, 2026, 12, 26, 10)) == ("two_factor", "schedule:w")


def test_overnight_exception_belongs_to_its_start_date_even_past_until() -> None:
    e = exc(date(2027, 1, 4), "22:00", "06:00", DoorState.UNLOCKED, Repeat.WEEKLY,
            until=date(2027, 1, 11), ident="cleaning")
    d = door(exceptions=(e,))
    assert state_at(d, local(LA, 2027, 1, 12, 5, 59)) == ("unlocked", "exception:cleaning")
    assert state_at(d, local(LA, 2027, 1, 12, 6, 0))[1] == "default"
    assert state_at(d, local(LA, 2027, 1, 4, 5, 0))[1] == "default"  # before the first start
    assert state_at(d, local(LA, 2027, 1, 18, 23, 0))[1] == "default"  # after until
    assert state_at(d, local(LA, 2027, 1, 19, 1, 0))[1] == "default"


# --- overlap helpers and two-factor capability ------------------------------------------


def test_windows_overlap_reports_the_first_shared_wall_moment() -> None:
    assert windows_overlap(win({FRI}, "22:00", "06:00"), win({SAT}, "05:00", "07:00")) == (
        "sat", hm("05:00"))
    assert windows_overlap(win({SUN}, "23:00", "01:00"), win({MON}, "00:30", "02:00")) == (
        "mon", 30)
    assert windows_overlap(win({MON}, "08:00", "12:00"), win({MON}, "12:00", "13:00")) is None
    assert windows_overlap(win({MON}, "08:00", "12:00"), win({TUE}, "08:00", "12:00")) is None


def test_exceptions_overlap_over_a_long_search_is_still_found() -> None:
    # Weekly on Saturdays vs a yearly 29 February: the first Saturday 29 February after 2027
    # is in 2048.
    a = exc(date(2027, 1, 2), repeat=Repeat.WEEKLY)
    b = exc(date(2028, 2, 29), repeat=Repeat.YEARLY)
    assert exceptions_overlap(a, b) == (date(2048, 2, 29), 0)
    assert exceptions_overlap(b, a) == (date(2048, 2, 29), 0)
    assert exceptions_overlap(a, exc(date(2028, 2, 29), repeat=Repeat.YEARLY,
                                     until=date(2047, 12, 31))) is None


def test_monthly_and_yearly_exceptions_meet_years_later() -> None:
    # Monthly on the 29th from 2029 meets a yearly 29 February in the next leap year.
    a = exc(date(2029, 1, 29), repeat=Repeat.MONTHLY)
    b = exc(date(2028, 2, 29), repeat=Repeat.YEARLY)
    assert exceptions_overlap(a, b) == (date(2032, 2, 29), 0)
    assert exceptions_overlap(a, exc(date(2028, 2, 29), repeat=Repeat.YEARLY,
                                     until=date(2031, 12, 31))) is None
    # The last day of February runs overnight into 1 March only in common years.
    c = exc(date(2028, 2, 28), "23:00", "01:00", repeat=Repeat.YEARLY)
    d = exc(date(2027, 3, 1), "00:30", "02:00", repeat=Repeat.YEARLY, until=date(2029, 1, 1))
    assert exceptions_overlap(c, d) is None  # 2028 is a leap year: 28 Feb runs into 29 Feb
    e = exc(date(2027, 3, 1), "00:30", "02:00", repeat=Repeat.YEARLY)
    assert exceptions_overlap(c, e) == (date(2029, 3, 1), 30)


def test_two_factor_lacks() -> None:
    assert two_factor_lacks(Door(id="a", reader=True, keypad=True)) is None
    assert two_factor_lacks(Door(id="a", reader=True, keypad=False)) == "no keypad"
    assert two_factor_lacks(Door(id="a", reader=False, keypad=True)) == "no badge reader"
    assert two_factor_lacks(Door(id="a", reader=False, keypad=False)) == (
        "neither a badge reader nor a keypad")
