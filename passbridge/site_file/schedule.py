"""A door's schedule windows and dated exceptions, and the rule that they must not overlap."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from passbridge.core.model import (
    MINUTES_PER_DAY,
    WEEKDAYS,
    DoorException,
    DoorState,
    Repeat,
    ScheduleWindow,
)
from passbridge.core.schedule import exceptions_overlap, windows_overlap
from passbridge.site_file.checker import Checker
from passbridge.site_file.describe import kind_of

_T = TypeVar("_T")
_DAY_NAMES = {"monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu",
              "friday": "fri", "saturday": "sat", "sunday": "sun"}


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _two_factor_problem(door_id: str, lacks: str) -> str:
    return (f"door {door_id!r}: two_factor needs both a badge reader and a keypad; "
            f"this door has {lacks}")


def parse_windows(
    check: Checker, m: Mapping[str, Any], path: str, door_id: str, lacks: str | None
) -> tuple[ScheduleWindow, ...]:
    windows: list[tuple[str, ScheduleWindow]] = []
    named: dict[str, str] = {}
    clean = True
    for index, (wpath, item) in enumerate(check.items(m, "schedule", path)):
        before = check.count
        w = check.mapping(item, wpath, required=("days", "state"),
                          optional=("id", "start", "end"))
        if w is None:
            clean = False
            continue
        name = check.ident(w, "id", wpath, str(index))
        if name in named:
            check.fail(f"{wpath}.id" if "id" in w else wpath,
                       f"window name {name!r} is already used by {named[name]} "
                       "(a window without an id is named by its position)")
        named.setdefault(name, wpath)
        days = _parse_days(check, w, wpath)
        start = check.clock(w, "start", wpath, 0, end=False)
        end = check.clock(w, "end", wpath, MINUTES_PER_DAY, end=True)
        state = check.choice(w, "state", wpath, DoorState, None)
        if state is DoorState.TWO_FACTOR and lacks:
            check.fail(f"{wpath}.state", _two_factor_problem(door_id, lacks))
        if check.count != before or state is None:
            clean = False
            continue
        windows.append((wpath, ScheduleWindow(name=name, days=days, start=start, end=end,
                                              state=state)))
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


def _parse_days(check: Checker, w: Mapping[str, Any], wpath: str) -> frozenset[int]:
    value = w.get("days")
    where = f"{wpath}.days"
    expected = f"a non-empty list of days ({', '.join(WEEKDAYS)})"
    if "days" not in w:
        return frozenset()
    if not isinstance(value, list) or not value:
        check.fail(where, f"expected {expected}; got {kind_of(value)}")
        return frozenset()
    days: set[int] = set()
    for i, item in enumerate(value):
        name = item.lower() if isinstance(item, str) else None
        name = _DAY_NAMES.get(name, name) if name else None
        if name not in WEEKDAYS:
            check.fail(f"{where}[{i}]",
                       f"expected one of {', '.join(WEEKDAYS)}; got {kind_of(item)}")
            continue
        index = WEEKDAYS.index(name)
        if index in days:
            check.fail(f"{where}[{i}]", f"{name} is listed twice")
        days.add(index)
    return frozenset(days)


def parse_exceptions(
    check: Checker, m: Mapping[str, Any], path: str, door_id: str, lacks: str | None
) -> tuple[DoorException, ...]:
    exceptions: list[tuple[str, DoorException]] = []
    seen: dict[str, str] = {}
    clean = True
    for epath, item in check.items(m, "exceptions", path):
        before = check.count
        e = check.mapping(item, epath, required=("id", "date", "state"),
                          optional=("start", "end", "repeat", "until"))
        if e is None:
            clean = False
            continue
        exc_id = check.ident(e, "id", epath)
        if exc_id in seen:
            check.fail(f"{epath}.id", f"exception {exc_id!r} is already defined at {seen[exc_id]}")
        elif exc_id:
            seen[exc_id] = epath
        first = check.day(e, "date", epath)
        start = check.clock(e, "start", epath, 0, end=False)
        end = check.clock(e, "end", epath, MINUTES_PER_DAY, end=True)
        state = check.choice(e, "state", epath, DoorState, None)
        repeat = check.choice(e, "repeat", epath, Repeat, Repeat.NONE)
        until = check.day(e, "until", epath)
        if first is not None and until is not None and until < first:
            check.fail(f"{epath}.until", f"expected a date on or after date ({first}); "
                                         f"got {until}")
        if state is DoorState.TWO_FACTOR and lacks:
            check.fail(f"{epath}.state", _two_factor_problem(door_id, lacks))
        if check.count != before or first is None or state is None or repeat is None:
            clean = False
            continue
        exceptions.append((epath, DoorException(id=exc_id, date=first, start=start, end=end,
                                                state=state, repeat=repeat, until=until)))
    if clean:
        _reject_overlaps(
            check, "exception", [(p, e.id, e) for p, e in exceptions], exceptions_overlap
        )
    return tuple(exc for _, exc in exceptions)
