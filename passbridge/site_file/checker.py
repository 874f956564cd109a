"""The problem collector and its typed field readers, shared by every part of a site file."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Any, TypeVar

from passbridge.core.model import MINUTES_PER_DAY
from passbridge.errors import Problem
from passbridge.ids import id_problem
from passbridge.site_file.describe import kind_of

_E = TypeVar("_E", bound=StrEnum)
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Checker:
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
            self.fail(path, f"expected a mapping with keys {keys}; got {kind_of(value)}")
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
            self.fail(where, f"expected a list; got {kind_of(value)}")
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
            self.fail(where, f"expected a non-empty string; got {kind_of(value)} (quote it)")
        else:
            self.fail(where, f"expected a non-empty string; got {kind_of(value)}")
        return default

    def ident(self, m: Mapping[str, Any], key: str, path: str, default: str = "") -> str:
        """An id (scenarios.md: 1-64 letters, digits, ``.`` ``_`` ``-`` ``~``).

        A string that breaks the rule is reported at its place and still
        returned, so that references to it are judged as usual.
        """
        before = self.count
        value = self.text(m, key, path, default)
        if key in m and self.count == before:  # a string it read, not the default
            self.id_at(value, _key(path, key))
        return value

    def id_at(self, value: str, where: str) -> bool:
        """Report ``value`` at ``where`` unless it is an id; whether it is one."""
        problem = id_problem(value)
        if problem is not None:
            self.fail(where, problem)
        return problem is None

    def flag(self, m: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        if key not in m:
            return default
        value = m[key]
        if isinstance(value, bool):
            return value
        self.fail(_key(path, key), f"expected true or false; got {kind_of(value)}")
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
        self.fail(_key(path, key),
                  f"expected a whole number from {lo} to {hi}; got {kind_of(value)}")
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
        self.fail(_key(path, key), f"expected one of {' | '.join(names)}; got {kind_of(value)}")
        return default

    def clock(self, m: Mapping[str, Any], key: str, path: str, default: int, *, end: bool) -> int:
        """A wall time "HH:MM" as minutes after midnight; "24:00" only as an end."""
        if key not in m:
            return default
        value = m[key]
        where = _key(path, key)
        expected = '"HH:MM" from "00:00" to "24:00"' if end else '"HH:MM" from "00:00" to "23:59"'
        if isinstance(value, int) and not isinstance(value, bool):
            self.fail(where, f'expected a quoted time {expected}; got {kind_of(value)} '
                             '(YAML reads an unquoted time like 19:00 as a number: quote it)')
            return default
        match = _TIME.fullmatch(value) if isinstance(value, str) else None
        if match:
            minutes = int(match[1]) * 60 + int(match[2])
            if int(match[2]) < 60 and (minutes < MINUTES_PER_DAY or (end and minutes == 1440)):
                return minutes
        self.fail(where, f"expected a time {expected}; got {kind_of(value)}")
        return default

    def door_ids(
        self, m: Mapping[str, Any], key: str, path: str, doors: Collection[str] | None
    ) -> tuple[bool, frozenset[str]] | None:
        """A list of this site's door ids or "all": (every door?, which ones).

        None when the key is absent; ``doors`` None: the site's doors could
        not be read, so ids are not checked against them.
        """
        if key not in m:
            return None
        value = m[key]
        where = _key(path, key)
        if value == "all":
            return True, frozenset()
        if not isinstance(value, list):
            self.fail(where, f'expected a list of door ids or "all"; got {kind_of(value)}')
            return False, frozenset()
        out: set[str] = set()
        for i, item in enumerate(value):
            if not isinstance(item, str) or (doors is not None and item not in doors):
                known = ", ".join(doors or ()) or "none"
                self.fail(f"{where}[{i}]", f"expected a door id of this site ({known}); "
                                           f"got {kind_of(item)}")
                continue
            out.add(item)
        return False, frozenset(out)

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
        self.fail(_key(path, key), f"expected a date YYYY-MM-DD; got {kind_of(value)}")
        return None
