"""The problem collector of the checks that come after the shape (``shape_errors``)."""

from __future__ import annotations

import re
from datetime import date, datetime

from passbridge.errors import Problem
from passbridge.site_file.describe import kind_of

_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")


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

    def day(self, value: date | str, where: str) -> date | None:
        """A calendar date; the shape already holds ``YYYY-MM-DD`` text (or a date)."""
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.fail(where, f"expected a date YYYY-MM-DD; got {kind_of(value)}")
            return None


def minutes_of(clock: str) -> int:
    """Minutes after midnight of a wall time the shape already holds as ``H:MM`` or ``HH:MM``."""
    match = _TIME.fullmatch(clock)
    assert match is not None, clock  # the model's pattern
    return int(match[1]) * 60 + int(match[2])
