"""Site files: the hand-written YAML (or JSON) that says which doors, users and keys a site has.

People write these files, so the loader is strict and talkative: unknown keys,
wrong types and impossible combinations are all errors, every one found is
reported at once (file, key path such as ``doors[1].schedule[0].state``, and
what was expected), and a file with any error is rejected as a whole.

Choices made here, beyond the written format (scenarios.md):

- Schedule windows may carry an ``id``; a decision reports the window as
  ``schedule:<id>``. Without one, the window is named by its position in the
  door's ``schedule`` list, counting from 0 (``schedule:0`` is the first).
  Window names are unique per door. ``start``/``end`` default to ``00:00`` and
  ``24:00`` in windows as in exceptions. Days are ``mon`` .. ``sun`` (full
  English names and any letter case are accepted too).
- The zone must be an IANA name known to the tz database (not the host's
  ``localtime``); a wrong letter case gets a "did you mean".
- A door with ``in_out: true`` must not say ``reader: false``.
- Times are quoted ``"HH:MM"`` strings. YAML reads an unquoted ``19:00`` as the
  number 1140, and entry codes or badge numbers written as bare numbers lose
  their leading zeros, so numbers are refused there with a hint to quote them.
  Ids, badge numbers and phone ids are strings for the same reason.
- Two schedule windows of one door that share a wall-clock moment, or two
  exceptions of one door that could cover the same moment (repeats and
  ``until`` included), are errors: which one applied would be arbitrary.
  See ``core.schedule`` for how repeats fall on short months and leap days.
- ``revision`` is the first 12 hex digits of a SHA-256 over the canonical form
  of what was loaded (defaults filled in, key files read, extra scenario keys
  left out), so formatting and comments do not change it. Entry codes enter it
  only as their keyed hashes: a bare hash of a 4-digit code next to an
  otherwise known file could be brute-forced from the revision.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from datetime import date, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from passbridge.core.model import (
    MINUTES_PER_DAY,
    WEEKDAYS,
    Door,
    DoorException,
    DoorState,
    Repeat,
    Role,
    ScheduleWindow,
    Site,
    TrustedKey,
    User,
)
from passbridge.core.pin import pin_hash
from passbridge.core.schedule import exceptions_overlap, two_factor_lacks, windows_overlap
from passbridge.errors import ConfigError, Problem

SITE_KEYS = frozenset({"site", "doors", "users", "trust"})
KEY_ALGORITHMS = ("ES256", "EdDSA")
RSSI_RANGE = (-127, 20)
UNLOCK_SECONDS_RANGE = (1, 60)
PIN_TIMEOUT_RANGE = (3, 60)
_MAX_KEY_FILE = 16 * 1024  # a PEM public key is well under 1 KiB; never read /dev/zero

_E = TypeVar("_E", bound=StrEnum)
_T = TypeVar("_T")
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PIN = re.compile(r"[0-9]{4,16}")
_DAY_NAMES = {"monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu",
              "friday": "fri", "saturday": "sat", "sunday": "sun"}


# --- reading files -------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice is an error, not "last wins"."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                duplicate = False  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"the key {key!r} is given twice",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def load_document(path: Path) -> tuple[Mapping[str, Any], str]:
    """Read a YAML or JSON file into a mapping; also return the name to use in errors.

    Any failure (missing file, bad encoding, bad YAML with its line, a top level
    that is not a mapping) is a ConfigError.
    """
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(label, "", f"not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise ConfigError([Problem(label, "", f"cannot read: {exc.strerror or exc}")]) from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a safe loader)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [Problem(label, f"line {exc.lineno}, column {exc.colno}", f"not valid JSON: {exc.msg}")]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(str(s) for s in (exc.context, exc.problem) if s)
        raise ConfigError([Problem(label, where, f"not valid YAML: {what}")]) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError([Problem(label, "", f"not valid YAML: {exc}")]) from None
    if not isinstance(data, Mapping):
        raise ConfigError(
            [Problem(label, "", f"expected a mapping with keys site, doors, users, trust; "
                                f"the file holds {_kind(data)}")]
        )
    return data, label


def load_site(path: Path, *, pin_key: bytes) -> Site:
    """Load and validate a site file; key files are found relative to it."""
    data, label = load_document(path)
    return parse_site(data, file=label, pin_key=pin_key, base_dir=path.parent)


# --- validation ---------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 40 else "a long string"
    if isinstance(value, datetime):
        return "a date and time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class _Checker:
    """Collects every problem of one file instead of stopping at the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, path, message))

    @property
    def count(self) -> int:
        return len(self.problems)

    # -- shapes --

    def mapping(
        self, value: Any, path: str, *, required: tuple[str, ...], optional: tuple[str, ...]
    ) -> Mapping[str, Any] | None:
        allowed = (*required, *optional)
        if not isinstance(value, Mapping):
            keys = ", ".join(allowed)
            self.fail(path, f"expected a mapping with keys {keys}; got {_kind(value)}")
            return None
        for key in value:
            if key not in allowed:
                name = str(key)
                hint = difflib.get_close_matches(name, allowed, n=1)
                also = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.fail(
                    _key(path, name), f"unknown key{also}; expected one of: {', '.join(allowed)}"
                )
        for key in required:
            if key not in value:
                self.fail(_key(path, key), "required, but missing")
        return value

    def items(self, m: Mapping[str, Any], key: str, path: str) -> list[tuple[str, Any]]:
        """The entries of an optional list, each with its path."""
        value = m.get(key)
        where = _key(path, key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(where, f"expected a list; got {_kind(value)}")
            return []
        return [(f"{where}[{i}]", item) for i, item in enumerate(value)]

    # -- scalars (each returns the default after recording a problem) --

    def text(self, m: Mapping[str, Any], key: str, path: str, default: str = "") -> str:
        if key not in m:
            return default
        value = m[key]
        where = _key(path, key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.fail(where, f"expected a non-empty string; got {_kind(value)} (quote it)")
        else:
            self.fail(where, f"expected a non-empty string; got {_kind(value)}")
        return default

    def flag(self, m: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        if key not in m:
            return default
        value = m[key]
        if isinstance(value, bool):
            return value
        self.fail(_key(path, key), f"expected true or false; got {_kind(value)}")
        return default

    def integer(
        self, m: Mapping[str, Any], key: str, path: str, default: int, bounds: tuple[int, int]
    ) -> int:
        if key not in m:
            return default
        value = m[key]
        lo, hi = bounds
        if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi:
            return value
        self.fail(_key(path, key), f"expected a whole number from {lo} to {hi}; got {_kind(value)}")
        return default

    def choice(
        self, m: Mapping[str, Any], key: str, path: str, kind: type[_E], default: _E | None
    ) -> _E | None:
        if key not in m:
            return default
        value = m[key]
        names = [e.value for e in kind]
        if isinstance(value, str) and value in names:
            return kind(value)
        self.fail(_key(path, key), f"expected one of {' | '.join(names)}; got {_kind(value)}")
        return default

    def clock(self, m: Mapping[str, Any], key: str, path: str, default: int, *, end: bool) -> int:
        """A wall time "HH:MM" as minutes after midnight; "24:00" only as an end."""
        if key not in m:
            return default
        value = m[key]
        where = _key(path, key)
        expected = '"HH:MM" from "00:00" to "24:00"' if end else '"HH:MM" from "00:00" to "23:59"'
        if isinstance(value, int) and not isinstance(value, bool):
            self.fail(where, f'expected a quoted time {expected}; got {_kind(value)} '
                             '(YAML reads an unquoted time like 19:00 as a number: quote it)')
            return default
        match = _TIME.fullmatch(value) if isinstance(value, str) else None
        if match:
            minutes = int(match[1]) * 60 + int(match[2])
            if int(match[2]) < 60 and (minutes < MINUTES_PER_DAY or (end and minutes == 1440)):
                return minutes
        self.fail(where, f"expected a time {expected}; got {_kind(value)}")
        return default

    def day(self, m: Mapping[str, Any], key: str, path: str) -> date | None:
        if key not in m:
            return None
        value = m[key]
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str) and _DATE.fullmatch(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        self.fail(_key(path, key), f"expected a date YYYY-MM-DD; got {_kind(value)}")
        return None


# --- the site -------------------------------------------------------------------


def parse_site(
    data: Mapping[str, Any],
    *,
    file: str,
    pin_key: bytes,
    extra_keys: frozenset[str] = frozenset(),
    base_dir: Path | None = None,
) -> Site:
    """Validate the site part of a parsed document and build the Site, or raise ConfigError.

    ``extra_keys`` are further top-level keys the caller handles itself (a
    scenario's ``name`` and ``steps``); they are ignored here and do not enter
    the revision.
    """
    check = _Checker(file)
    top = check.mapping(
        data, "", required=("site",), optional=tuple(sorted(SITE_KEYS - {"site"} | extra_keys))
    )
    if top is None:
        raise ConfigError(check.problems)

    site_id, tz = _parse_site_header(check, top.get("site"))
    doors = _parse_doors(check, top)
    users = _parse_users(check, top, doors, pin_key)
    bridges, backends = _parse_trust(check, top.get("trust"), base_dir)
    if check.problems:
        raise ConfigError(check.problems)
    assert tz is not None  # a missing zone is a problem above

    assert doors is not None  # an unreadable door is a problem above
    built_doors = {door.id: door for door in doors.values() if door is not None}
    built_users = {user.id: user for user in users}
    by_pin: dict[bytes, list[str]] = {}
    for user in users:
        if user.pin_hash is not None:
            by_pin.setdefault(user.pin_hash, []).append(user.id)
    return Site(
        id=site_id,
        timezone=tz,
        doors=built_doors,
        users=built_users,
        bridges=bridges,
        backends=backends,
        revision=_revision(site_id, tz, built_doors, built_users, bridges, backends),
        user_by_card={card: user.id for user in built_users.values() for card in user.cards},
        user_by_phone={phone: user.id for user in built_users.values() for phone in user.phones},
        users_by_pin_hash={h: tuple(ids) for h, ids in by_pin.items()},
    )


def _parse_site_header(check: _Checker, value: Any) -> tuple[str, ZoneInfo | None]:
    m = check.mapping(value, "site", required=("id", "timezone"), optional=())
    if m is None:
        return "", None
    site_id = check.text(m, "id", "site")
    name = m.get("timezone")
    if "timezone" not in m:
        return site_id, None
    if not isinstance(name, str) or not name.strip():
        check.fail("site.timezone", f"expected an IANA time zone name such as "
                                    f"America/Los_Angeles; got {_kind(name)}")
        return site_id, None
    zones = _known_zones()
    if name not in zones:
        same = [z for z in zones if z.casefold() == name.strip().casefold()]
        hint = f" (did you mean {same[0]!r}?)" if same else ""
        check.fail("site.timezone", f"unknown time zone {name!r}{hint}; expected an IANA name "
                                    "such as America/Los_Angeles or Europe/Berlin")
        return site_id, None
    try:
        return site_id, ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        check.fail("site.timezone", f"time zone {name!r} cannot be read from the tz database")
        return site_id, None


@cache
def _known_zones() -> frozenset[str]:
    """IANA zone names; not the host-dependent ``localtime`` or the placeholder ``Factory``."""
    return frozenset(available_timezones() - {"localtime", "Factory", "posixrules"})


_DOOR_KEYS = ("name", "reader", "keypad", "in_out", "unlock_seconds", "pin_timeout",
              "ble_rssi_min", "strict_two_factor", "schedule", "exceptions")


def _parse_doors(check: _Checker, top: Mapping[str, Any]) -> dict[str, Door | None] | None:
    """Doors by id; None for a door whose entry has problems (its id still counts).

    None overall when some door's id could not be read: references to doors
    cannot be judged then, and reporting them would only bury the real problem.
    """
    doors: dict[str, Door | None] = {}
    first_path: dict[str, str] = {}
    complete = top.get("doors") is None or isinstance(top.get("doors"), list)
    for path, item in check.items(top, "doors", ""):
        before = check.count
        m = check.mapping(item, path, required=("id",), optional=_DOOR_KEYS)
        if m is None:
            complete = False
            continue
        door_id = check.text(m, "id", path)
        complete = complete and bool(door_id)
        if door_id and door_id in first_path:
            check.fail(f"{path}.id", f"door {door_id!r} is already defined at "
                                     f"{first_path[door_id]}")
            continue
        if door_id:
            first_path[door_id] = path
        door = _parse_door(check, m, path, door_id)
        if door_id:
            doors[door_id] = door if check.count == before else None
    return doors if complete else None


def _parse_door(check: _Checker, m: Mapping[str, Any], path: str, door_id: str) -> Door:
    reader = check.flag(m, "reader", path, True)
    keypad = check.flag(m, "keypad", path, False)
    in_out = check.flag(m, "in_out", path, False)
    if in_out and not reader and "reader" in m:
        check.fail(f"{path}.in_out", f"door {door_id!r}: an In/Out door needs badge readers "
                                     "(reader: true)")
    door = Door(
        id=door_id,
        name=check.text(m, "name", path),
        reader=reader,
        keypad=keypad,
        in_out=in_out,
        unlock_seconds=check.integer(m, "unlock_seconds", path, 5, UNLOCK_SECONDS_RANGE),
        pin_timeout=check.integer(m, "pin_timeout", path, 15, PIN_TIMEOUT_RANGE),
        ble_rssi_min=check.integer(m, "ble_rssi_min", path, -60, RSSI_RANGE),
        strict_two_factor=check.flag(m, "strict_two_factor", path, False),
    )
    lacks = two_factor_lacks(door)
    windows = _parse_windows(check, m, path, door_id, lacks)
    exceptions = _parse_exceptions(check, m, path, door_id, lacks)
    return replace(door, schedule=windows, exceptions=exceptions)


def _two_factor_problem(door_id: str, lacks: str) -> str:
    return (f"door {door_id!r}: two_factor needs both a badge reader and a keypad; "
            f"this door has {lacks}")


def _parse_windows(
    check: _Checker, m: Mapping[str, Any], path: str, door_id: str, lacks: str | None
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
        name = check.text(w, "id", wpath, str(index))
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
    check: _Checker,
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


def _parse_days(check: _Checker, w: Mapping[str, Any], wpath: str) -> frozenset[int]:
    value = w.get("days")
    where = f"{wpath}.days"
    expected = f"a non-empty list of days ({', '.join(WEEKDAYS)})"
    if "days" not in w:
        return frozenset()
    if not isinstance(value, list) or not value:
        check.fail(where, f"expected {expected}; got {_kind(value)}")
        return frozenset()
    days: set[int] = set()
    for i, item in enumerate(value):
        name = item.lower() if isinstance(item, str) else None
        name = _DAY_NAMES.get(name, name) if name else None
        if name not in WEEKDAYS:
            check.fail(f"{where}[{i}]", f"expected one of {', '.join(WEEKDAYS)}; got {_kind(item)}")
            continue
        index = WEEKDAYS.index(name)
        if index in days:
            check.fail(f"{where}[{i}]", f"{name} is listed twice")
        days.add(index)
    return frozenset(days)


def _parse_exceptions(
    check: _Checker, m: Mapping[str, Any], path: str, door_id: str, lacks: str | None
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
        exc_id = check.text(e, "id", epath)
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


# --- users -----------------------------------------------------------------------

_USER_KEYS = ("name", "role", "cards", "pin", "phones", "doors", "remote_unlock", "enabled")


def _owned_strings(
    check: _Checker,
    m: Mapping[str, Any],
    key: str,
    path: str,
    owners: dict[str, tuple[str, str]],
    user_id: str,
    what: str,
    *,
    echo: bool,
) -> tuple[str, ...]:
    """A list of strings that belong to one user only (badge numbers, phone ids)."""
    out: list[str] = []
    for ipath, item in check.items(m, key, path):
        if not isinstance(item, str) or not item.strip():
            hint = " (quote it: a bare number loses leading zeros)" if isinstance(
                item, int) and not isinstance(item, bool) else ""
            check.fail(ipath, f"expected a non-empty string; got {_kind(item)}{hint}")
            continue
        if item in owners:
            other_path, other_user = owners[item]
            shown = f"{what} {item!r}" if echo else f"the same {what} as {other_path}"
            whose = "this user" if other_user == user_id else f"user {other_user!r}"
            check.fail(ipath, f"{shown} is already given to {whose} ({other_path}); "
                              f"a {what} belongs to one user")
            continue
        owners[item] = (ipath, user_id)
        out.append(item)
    return tuple(out)


def _parse_users(
    check: _Checker,
    top: Mapping[str, Any],
    doors: Mapping[str, Door | None] | None,
    pin_key: bytes,
) -> list[User]:
    users: list[User] = []
    seen: dict[str, str] = {}
    cards: dict[str, tuple[str, str]] = {}
    phones: dict[str, tuple[str, str]] = {}
    for path, item in check.items(top, "users", ""):
        m = check.mapping(item, path, required=("id",), optional=_USER_KEYS)
        if m is None:
            continue
        user_id = check.text(m, "id", path)
        if user_id in seen:
            check.fail(f"{path}.id", f"user {user_id!r} is already defined at {seen[user_id]}")
        elif user_id:
            seen[user_id] = path
        role = check.choice(m, "role", path, Role, Role.USER) or Role.USER
        user_cards = _owned_strings(check, m, "cards", path, cards, user_id, "badge number",
                                    echo=False)
        user_phones = _owned_strings(check, m, "phones", path, phones, user_id, "phone",
                                     echo=True)
        all_doors, user_doors = _parse_user_doors(check, m, path, doors)
        users.append(User(
            id=user_id,
            name=check.text(m, "name", path),
            role=role,
            cards=user_cards,
            pin_hash=_parse_pin(check, m, path, pin_key),
            phones=user_phones,
            all_doors=all_doors,
            doors=user_doors,
            remote_unlock=check.flag(m, "remote_unlock", path, False),
            enabled=check.flag(m, "enabled", path, True),
        ))
    return users


def _parse_pin(check: _Checker, m: Mapping[str, Any], path: str, pin_key: bytes) -> bytes | None:
    """The keyed hash of the entry code; the code itself is neither kept nor echoed."""
    if "pin" not in m or m["pin"] is None:
        return None
    value = m["pin"]
    where = f"{path}.pin"
    if isinstance(value, int) and not isinstance(value, bool):
        check.fail(where, 'expected the entry code as a quoted string of 4-16 digits, e.g. '
                          'pin: "0246"; a bare number loses its leading zeros')
        return None
    if not isinstance(value, str) or not _PIN.fullmatch(value):
        got = f"a string of {len(value)} characters" if isinstance(value, str) else _kind(value)
        check.fail(where, f"expected a string of 4-16 digits (0-9); got {got}")
        return None
    return pin_hash(pin_key, value)


def _parse_user_doors(
    check: _Checker, m: Mapping[str, Any], path: str, doors: Mapping[str, Door | None] | None
) -> tuple[bool, frozenset[str]]:
    """Whether the user may open every door, else which ones (``doors`` None: not checked)."""
    if "doors" not in m:
        return False, frozenset()
    value = m["doors"]
    where = f"{path}.doors"
    if value == "all":
        return True, frozenset()
    if not isinstance(value, list):
        check.fail(where, f'expected a list of door ids or "all"; got {_kind(value)}')
        return False, frozenset()
    out: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, str) or (doors is not None and item not in doors):
            known = ", ".join(doors or ()) or "none"
            check.fail(f"{where}[{i}]", f"expected a door id of this site ({known}); "
                                        f"got {_kind(item)}")
            continue
        out.add(item)
    return False, frozenset(out)


# --- trust ---------------------------------------------------------------------


def _parse_trust(
    check: _Checker, value: Any, base_dir: Path | None
) -> tuple[tuple[TrustedKey, ...], tuple[TrustedKey, ...]]:
    if value is None:
        return (), ()
    m = check.mapping(value, "trust", required=(), optional=("bridges", "backends"))
    if m is None:
        return (), ()
    return (_parse_keys(check, m, "bridges", base_dir),
            _parse_keys(check, m, "backends", base_dir))


def _parse_keys(
    check: _Checker, m: Mapping[str, Any], key: str, base_dir: Path | None
) -> tuple[TrustedKey, ...]:
    keys: list[TrustedKey] = []
    seen: dict[str, str] = {}
    for path, item in check.items(m, key, "trust"):
        before = check.count
        k = check.mapping(item, path, required=("id",),
                          optional=("alg", "public_key", "public_key_file"))
        if k is None:
            continue
        key_id = check.text(k, "id", path)
        if key_id in seen:
            check.fail(f"{path}.id", f"key id {key_id!r} is already used at {seen[key_id]}")
        elif key_id:
            seen[key_id] = path
        alg = k.get("alg", "ES256")
        if alg not in KEY_ALGORITHMS:
            check.fail(f"{path}.alg",
                       f"expected ES256 (P-256) or EdDSA (Ed25519); got {_kind(alg)}")
        pem = _read_pem(check, k, path, base_dir)
        if pem is None or check.count != before:
            continue
        normal = _check_public_key(check, pem, path, str(alg))
        if normal is not None:
            keys.append(TrustedKey(id=key_id, alg=str(alg), public_key_pem=normal))
    return tuple(keys)


def _read_pem(
    check: _Checker, k: Mapping[str, Any], path: str, base_dir: Path | None
) -> tuple[str, str] | None:
    """(PEM text, the key path it came from), from exactly one of the two keys."""
    if ("public_key" in k) == ("public_key_file" in k):
        check.fail(path, "expected exactly one of public_key (PEM text) or public_key_file")
        return None
    if "public_key" in k:
        pem = check.text(k, "public_key", path)
        return (pem, f"{path}.public_key") if pem else None
    name = check.text(k, "public_key_file", path)
    if not name:
        return None
    file = (base_dir or Path.cwd()) / name
    try:
        with file.open("rb") as stream:
            raw = stream.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        check.fail(f"{path}.public_key_file", f"cannot read {file}: {exc.strerror or exc}")
        return None
    if len(raw) > _MAX_KEY_FILE:
        check.fail(f"{path}.public_key_file", f"{file} is too large for a PEM public key")
        return None
    return raw.decode("ascii", "replace"), f"{path}.public_key_file"


def _check_public_key(check: _Checker, pem: tuple[str, str], path: str, alg: str) -> str | None:
    """The key as canonical PEM if it parses and fits the algorithm."""
    text, where = pem
    try:
        key = serialization.load_pem_public_key(text.encode("ascii", "replace"))
    except (ValueError, UnsupportedAlgorithm, TypeError):
        check.fail(where, "expected a PEM public key (-----BEGIN PUBLIC KEY-----)")
        return None
    fits: Callable[[object], bool]
    if alg == "ES256":
        fits = lambda k: isinstance(k, ec.EllipticCurvePublicKey) and isinstance(  # noqa: E731
            k.curve, ec.SECP256R1)
        wanted = "a P-256 (secp256r1) key for ES256"
    else:
        fits = lambda k: isinstance(k, ed25519.Ed25519PublicKey)  # noqa: E731
        wanted = "an Ed25519 key for EdDSA"
    if not fits(key):
        check.fail(where, f"expected {wanted}; got a {type(key).__name__.removeprefix('_')}")
        return None
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


# --- revision ------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot put {type(value).__name__} into the revision")


def _revision(
    site_id: str,
    tz: ZoneInfo,
    doors: Mapping[str, Door],
    users: Mapping[str, User],
    bridges: tuple[TrustedKey, ...],
    backends: tuple[TrustedKey, ...],
) -> str:
    canonical = {
        "site": {"id": site_id, "timezone": tz.key},
        "doors": [asdict(door) for door in doors.values()],
        "users": [asdict(user) for user in users.values()],
        "trust": {"bridges": [asdict(k) for k in bridges],
                  "backends": [asdict(k) for k in backends]},
    }
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]
