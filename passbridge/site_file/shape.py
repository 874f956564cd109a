"""The shape of a site file, declared once as typed models (pydantic v2).

Why models: the keys, types, enums and ranges of a site file are written
here once, and what checks files comes from them: the first check of every
file loaded (``shape_errors.check_shape``, in the loader's words) and
``passbridge schema site``, a JSON Schema editors use to check YAML as
people type. Two rules of meaning run with the shape because they are about
single values: the id rule (``passbridge.ids``) and references to this
site's doors (the door ids written come in as validation context). What a
shape cannot say stays as code after it (``site_file.*``): calendar dates,
unique ids, overlapping windows, two-factor on a door without reader and
keypad, key material.

The models are strict (no coercion: ``"5"`` is not 5, ``1`` is not true)
and forbid unknown keys. Enumerations are ``Literal`` types of their enum's
values (``one_of``). How an error about a value is worded lives beside its
type (``Words``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

from passbridge.core.model import WEEKDAYS, Factor, Repeat, Role
from passbridge.core.policy import (
    BLE_RSSI_MIN_DEFAULT,
    ID_MAX_CHARS,
    PIN_DIGITS,
    PIN_TIMEOUT_DEFAULT,
    PIN_TIMEOUT_RANGE,
    RSSI_RANGE,
    UNLOCK_SECONDS_DEFAULT,
    UNLOCK_SECONDS_RANGE,
)
from passbridge.enum_literals import DoorStateName, one_of
from passbridge.ids import id_problem
from passbridge.site_file.describe import kind_of

_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _any_case(word: str) -> str:
    """A regex for ``word`` in any letter case, without inline flags (JSON
    Schema patterns are ECMA 262, which has no ``(?i)``)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


_DAY_PATTERN = "^(?:" + "|".join(_any_case(d) for d in (*WEEKDAYS, *_FULL_DAY_NAMES)) + ")$"

KEY_ALGORITHMS = ("ES256", "EdDSA")
# Factors a bridge's trust entry may name: those a factor token can carry.
BRIDGE_FACTORS = tuple(f.value for f in Factor if f is not Factor.PIN)


if TYPE_CHECKING:  # for mypy, a value of any of these is a str
    RepeatName: TypeAlias = str
    RoleName: TypeAlias = str
    KeyAlgorithm: TypeAlias = str
    BridgeFactorName: TypeAlias = str
else:
    RepeatName = one_of(Repeat)
    RoleName = one_of(Role)
    KeyAlgorithm = one_of(KEY_ALGORITHMS)
    BridgeFactorName = one_of(BRIDGE_FACTORS)

# The default of a key that may be left out but, when written, may not be
# null: the model holds None for "not written". Typed Any so that mypy lets a
# field of type ``str`` start out as it.
ABSENT: Any = None


@dataclass(frozen=True)
class Words:
    """How an error about this value is worded (``shape_errors``), when the
    type alone would say it badly. Kept beside the type so the wording is
    declared once with the shape.

    ``expected``: what to say was expected; ``number_hint``: said when a
    number was written where text belongs; ``echo``: whether the message may
    repeat the value (never for entry codes); ``refusals``: values with a
    reason of their own.
    """

    expected: str | None = None
    number_hint: str = "quote it"
    echo: bool = True
    refusals: tuple[tuple[str, str], ...] = ()


def _an_id(value: str) -> str:
    """The one id rule (``passbridge.ids``), checked with the shape so that a
    bad id is reported in the same pass as everything else about the file."""
    problem = id_problem(value)
    if problem is not None:
        raise PydanticCustomError("bad_id", "{problem}", {"problem": problem})
    return value


def _known_door(value: str, info: ValidationInfo) -> str:
    """A door reference must name a door of this site. The loader passes the
    site's door ids as validation context (None: they could not be read, so
    references are not judged); without context nothing is checked."""
    doors = (info.context or {}).get("doors")
    if doors is not None and value not in doors:
        known = ", ".join(doors) or "none"
        raise PydanticCustomError(
            "unknown_door", "expected a door id of this site ({known}); got {got}",
            {"known": known, "got": kind_of(value)})
    return value


Text = Annotated[str, Field(min_length=1, pattern=r"\S", description="a non-empty string")]
Id = Annotated[str, Field(
    min_length=1, max_length=ID_MAX_CHARS,
    description=f"an id: 1-{ID_MAX_CHARS} letters or digits (any script) and . _ - ~, "
                "starting with a letter or digit",
), AfterValidator(_an_id), Words(expected="a non-empty string")]
DayName = Annotated[str, Field(
    pattern=_DAY_PATTERN,
    description=f"one of {', '.join(WEEKDAYS)} (full English names and any letter case too)",
), Words(expected=f"one of {', '.join(WEEKDAYS)}")]
_CLOCK_HINT = "YAML reads an unquoted time like 19:00 as a number: quote it"
StartTime = Annotated[str, Field(
    pattern=r"^(?:[01]?[0-9]|2[0-3]):[0-5][0-9]$",
    description='a quoted time "HH:MM" from "00:00" to "23:59"',
), Words(expected='a quoted time "HH:MM" from "00:00" to "23:59"', number_hint=_CLOCK_HINT)]
EndTime = Annotated[str, Field(
    pattern=r"^(?:(?:[01]?[0-9]|2[0-3]):[0-5][0-9]|24:00)$",
    description='a quoted time "HH:MM" from "00:00" to "24:00"',
), Words(expected='a quoted time "HH:MM" from "00:00" to "24:00"', number_hint=_CLOCK_HINT)]
_DATE_SCHEMA = {"type": "string", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                "description": "a date YYYY-MM-DD"}
# The YAML loader keeps dates as text; a Python caller may pass a date.
DateValue = Annotated[
    dt.date | Annotated[str, Field(pattern=_DATE_SCHEMA["pattern"])],
    WithJsonSchema(_DATE_SCHEMA), Words(expected="a date YYYY-MM-DD"),
]
DoorRef = Annotated[str, AfterValidator(_known_door), Field(
    description="a door id of this site"), Words(expected="a door id of this site")]
DoorIds = Annotated[
    Literal["all"] | list[DoorRef],
    Field(description='a list of door ids of this site, or "all"'),
]


class Shape(BaseModel):
    """Every file model: strict types, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)


class SiteHeader(Shape):
    id: Id
    timezone: Annotated[str, Field(
        min_length=1, pattern=r"\S",
        description="an IANA time zone name such as America/Los_Angeles",
    ), Words(expected="an IANA time zone name such as America/Los_Angeles")]


class Window(Shape):
    """A weekly window in site-local wall time; without ``id`` it is named by
    its position in the door's schedule (``schedule:0``)."""

    id: Id = ABSENT
    days: Annotated[list[DayName], Field(min_length=1), Words(
        expected=f"a non-empty list of days ({', '.join(WEEKDAYS)})")]
    start: StartTime = "00:00"
    end: EndTime = "24:00"
    state: DoorStateName


class DoorException(Shape):
    """A dated override of the schedule, optionally repeating."""

    id: Id
    date: DateValue
    start: StartTime = "00:00"
    end: EndTime = "24:00"
    state: DoorStateName
    repeat: RepeatName = "none"
    until: DateValue = ABSENT


class Door(Shape):
    id: Id
    name: Text = ABSENT
    reader: bool = True
    keypad: bool = False
    in_out: bool = False
    unlock_seconds: Annotated[int, Field(ge=UNLOCK_SECONDS_RANGE[0],
                                         le=UNLOCK_SECONDS_RANGE[1])] = UNLOCK_SECONDS_DEFAULT
    pin_timeout: Annotated[int, Field(ge=PIN_TIMEOUT_RANGE[0], le=PIN_TIMEOUT_RANGE[1],
                                      description="seconds")] = PIN_TIMEOUT_DEFAULT
    ble_rssi_min: Annotated[int, Field(ge=RSSI_RANGE[0], le=RSSI_RANGE[1],
                                       description="dBm a phone must reach")
                            ] = BLE_RSSI_MIN_DEFAULT
    strict_two_factor: bool = False
    schedule: list[Window] | None = None
    exceptions: list[DoorException] | None = None


_PIN_DIGITS = f"{PIN_DIGITS[0]}-{PIN_DIGITS[1]}"


class User(Shape):
    id: Id
    name: Text = ABSENT
    role: RoleName = "user"
    cards: list[Annotated[Text, Words(
        number_hint="quote it: a bare number loses leading zeros")]] | None = None
    pin: Annotated[str, Field(
        pattern=rf"^[0-9]{{{PIN_DIGITS[0]},{PIN_DIGITS[1]}}}$",
        description=f"the entry code, a quoted string of {_PIN_DIGITS} digits"),
        Words(expected=f"the entry code as a quoted string of {_PIN_DIGITS} digits (0-9)",
              number_hint="a bare number loses its leading zeros", echo=False),
    ] | None = None
    phones: list[Id] | None = None
    doors: DoorIds = ABSENT
    remote_unlock: bool = False
    enabled: bool = True


class TrustedKey(Shape):
    """A public key; exactly one of ``public_key`` or ``public_key_file`` (checked by code)."""

    id: Id
    alg: Annotated[KeyAlgorithm, Words(
        expected="ES256 (P-256) or EdDSA (Ed25519)")] = "ES256"
    public_key: Annotated[Text, Field(description="PEM text")] = ABSENT
    public_key_file: Annotated[Text, Field(
        description="a PEM file, relative to this file")] = ABSENT


class BridgeKey(TrustedKey):
    doors: DoorIds = ABSENT
    factors: list[Annotated[BridgeFactorName, Words(refusals=(
        ("pin", "a PIN never travels as a factor token"),))]] | None = None


class Trust(Shape):
    bridges: list[BridgeKey] | None = None
    backends: list[TrustedKey] | None = None


class SiteFile(Shape):
    """A site file (``passbridge serve --site``, ``passbridge check``)."""

    site: SiteHeader
    doors: list[Door] | None = None
    users: list[User] | None = None
    trust: Trust | None = None
