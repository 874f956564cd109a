"""The root of passbridge's exceptions, and the errors that reach people
(each names the place: file, key path, and what was expected)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input file: where, and what was expected."""

    file: str
    path: str  # key path such as ``doors[1].schedule[0].state``; "" for the whole file
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"


class PassbridgeError(Exception):
    """Every exception passbridge defines derives from this one.

    So ``except PassbridgeError`` catches our own errors and nothing of
    Python's or a library's. Each subclass keeps the built-in base it had
    (``ValueError``, ``KeyError``, ``RuntimeError``) beside this root, so
    that what catches it where did not change.
    """


class ConfigError(PassbridgeError):
    """A configuration (site or scenario file, API change) that cannot be applied.

    It carries every problem found, so a person fixes the file in one pass;
    nothing of a rejected configuration is ever applied.
    """

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class UnknownDoor(PassbridgeError, KeyError):
    """A request named a door the site does not have (HTTP 404)."""

    def __init__(self, door: str) -> None:
        super().__init__(door)
        self.door = door

    def __str__(self) -> str:
        return f"no door {self.door!r} on this site"
