"""Ids (site, door, user, phone, credential, backend, bridge, exception and
window ids): one rule, checked in one place (scenarios.md).

An id is 1-64 characters, each a letter or a digit of any script or one of
``.`` ``_`` ``-`` ``~``, starting with a letter or a digit. Ids travel as
they are in URL paths, file names and log lines, so nothing that could
change a path (``/``, a leading ``.``), a URL (``?``, ``%``) or a log line
(control characters) is ever an id. Pure functions, no I/O: the core, the
loaders and the command line all use them.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from passbridge.core.policy import ID_MAX_CHARS

_PUNCTUATION = frozenset("._-~")
ID_RULE = (f"1-{ID_MAX_CHARS} letters or digits (any script) and . _ - ~, "
           "starting with a letter or digit")


def _letter_or_digit(char: str) -> bool:
    """A Unicode letter (category L*) or decimal digit (Nd) of any script."""
    category = unicodedata.category(char)
    return category[0] == "L" or category == "Nd"


def id_problem(value: object) -> str | None:
    """Why ``value`` is not an id (for a message that names its place), or None."""
    if not isinstance(value, str):
        return f"expected an id ({ID_RULE})"
    if not 1 <= len(value) <= ID_MAX_CHARS:
        return f"expected {ID_RULE}; got {len(value)} characters"
    if not _letter_or_digit(value[0]):
        return f"expected {ID_RULE}; {value[0]!r} cannot start an id"
    for char in value:
        if not (_letter_or_digit(char) or char in _PUNCTUATION):
            return f"expected {ID_RULE}; {char!r} is not allowed in an id"
    return None


def check_id(value: object, what: str) -> str:
    """``value`` if it is an id, else ValueError naming ``what`` it was meant to be."""
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(f"{what} {value!r}: {problem}")
    assert isinstance(value, str)
    return value


def file_for_id(folder: Path, value: str, suffix: str, *, what: str) -> Path:
    """``folder/<id><suffix>``, for an id that can only name a file in that folder.

    The id rule already excludes separators and a leading dot; the path is
    checked once more after joining, so no id ever becomes a file elsewhere.
    """
    name = check_id(value, what) + suffix
    path = folder / name
    if path.parent != folder or path.name != name:
        raise ValueError(f"{what} {value!r}: does not name a file in {folder}")
    return path
