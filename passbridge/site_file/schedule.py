"""A door's schedule windows and dated exceptions, and the rule that they must not overlap."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from passbridge.core.model import (
    WEEKDAYS,
    DoorException,
    DoorState,
    Repeat,
    ScheduleWindow,
)
from passbridge.core.schedule import exceptions_overlap, windows_overlap
from passbridge.site_file import shape
from passbridge.site_file.checker import Checker, minutes_of

_T = TypeVar("_T")
_DAY_NAMES = {"monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu",
              "friday": "fri", "saturday": "sat", "sunday": "sun"}


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _two_factor_problem(door_id: str, lacks: str) -> str:
    return (f"door {door_id!r}: two_factor needs both a badge reader and a keypad; "
            f"this door has {lacks}")


def parse_windows(
    check: Checker, items: list[shape.Window], path: str, door_id: str, lacks: str | None
) -> tuple[ScheduleWindow, ...]:
    windows: list[tuple[str, ScheduleWindow]] = []
    named: dict[str, str] = {}
    clean = True
    for index, w in enumerate(items):
        wpath = f"{path}.schedule[{index}]"
        before = check.count
        name = str(index) if w.id is None else w.id
        if name in named:
            check.fail(f"{wpath}.id" if w.id is not None else wpath,
                       f"window name {name!r} is already used by {named[name]} "
                       "(a window without an id is named by its position)")
        named.setdefault(name, wpath)
        days = _parse_days(check, w.days, wpath)
        state = DoorState(w.state)
        if state is DoorState.TWO_FACTOR and lacks:
            check.fail(f"{wpath}.state", _two_factor_problem(door_id, lacks))
        if check.count != before:
            clean = False
            continue
        windows.append((wpath, ScheduleWindow(name=name, days=days, start=minutes_of(w.start),
                                              end=minutes_of(w.end), state=state)))
    if clean:
        _reject_overlaps(check, "window", [(p, w.name, w) for p, w in windows], windows_overlap)
    return tuple(window for _, window in windows)


def _reject_overlaps(
    check: Checker,
    kind: str,
    placed: list[tuple[str, str, _T]],
    overlap: Callable[[_T, _T], tuple[object, int] | None],
) -> None:
    """Two windows (or exceptions) of one door covering the same moment would
    make first-match arbitrary: name both and the first moment they share."""
    for j, (jpath, later_name, later) in enumerate(placed):
        for ipath, earlier_name, earlier in placed[:j]:
            shared = overlap(earlier, later)
            if shared is not None:
                when, minute = shared  # a weekday name, or a date (str() is ISO)
                check.fail(jpath, f"{kind} {later_name!r} and {kind} {earlier_name!r} "
                                  f"({ipath}) both cover {when} {_hhmm(minute)}; "
                                  f"{kind}s of one door must not overlap")


def _parse_days(check: Checker, names: list[str], wpath: str) -> frozenset[int]:
    """Weekday numbers (0 = Monday); the shape allows full names and any letter case."""
    days: set[int] = set()
    for i, written in enumerate(names):
        name = _DAY_NAMES.get(written.lower(), written.lower())
        index = WEEKDAYS.index(name)
        if index in days:
            check.fail(f"{wpath}.days[{i}]", f"{name} is listed twice")
        days.add(index)
    return frozenset(days)


def parse_exceptions(
    check: Checker, items: list[shape.DoorException], path: str, door_id: str, lacks: str | None
) -> tuple[DoorException, ...]:
    exceptions: list[tuple[str, DoorException]] = []
    seen: dict[str, str] = {}
    clean = True
    for index, e in enumerate(items):
        epath = f"{path}.exceptions[{index}]"
        before = check.count
        if e.id in seen:
            check.fail(f"{epath}.id", f"exception {e.id!r} is already defined at {seen[e.id]}")
        else:
            seen[e.id] = epath
        first = check.day(e.date, f"{epath}.date")
        until = None if e.until is None else check.day(e.until, f"{epath}.until")
        if first is not None and until is not None and until < first:
            check.fail(f"{epath}.until", f"expected a date on or after date ({first}); "
                                         f"got {until}")
        state = DoorState(e.state)
        if state is DoorState.TWO_FACTOR and lacks:
            check.fail(f"{epath}.state", _two_factor_problem(door_id, lacks))
        if check.count != before or first is None:
            clean = False
            continue
        exceptions.append((epath, DoorException(
            id=e.id, date=first, start=minutes_of(e.start), end=minutes_of(e.end), state=state,
            repeat=Repeat(e.repeat), until=until)))
    if clean:
        _reject_overlaps(
            check, "exception", [(p, e.id, e) for p, e in exceptions], exceptions_overlap
        )
    return tuple(exc for _, exc in exceptions)
