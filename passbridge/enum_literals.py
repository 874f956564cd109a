"""The core's enums as ``Literal`` types for pydantic models.

Strict pydantic wants enum instances from Python input, while YAML and JSON
give strings, so a model field of an enum is the ``Literal`` of its values,
made from the enum so the two cannot drift. The site file, scenario file and
decision answer models share these instead of each spelling its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from passbridge.core.model import DoorState, Factor, Reason, Result, Side


def one_of(values: Iterable[str]) -> Any:
    """``Literal[...]`` of these strings."""
    return Literal.__getitem__(tuple(str(v) for v in values))


if TYPE_CHECKING:  # for mypy, a value of any of these is a str
    DoorStateName: TypeAlias = str
    SideName: TypeAlias = str
    ResultName: TypeAlias = str
    ReasonName: TypeAlias = str
    FactorName: TypeAlias = str
else:
    DoorStateName = one_of(DoorState)
    SideName = one_of(Side)
    ResultName = one_of(Result)
    ReasonName = one_of(Reason)
    FactorName = one_of(Factor)
