"""The shape of a scenario file: a site file plus ``name`` and timed ``steps``.

Declared once as typed models, like ``site_file.shape`` (see there for why):
the scenario loader checks every file with them first, and ``passbridge
schema scenario`` prints the JSON Schema that comes from them. Doors named by
steps are judged with the shape (``DoorRef``). What a shape cannot say stays
as code in ``scenario.loader``: exactly one action per step, ``at`` or
``after`` but not both, time never going backwards, real dates and
durations, phone ids, a reason that fits its result, ``minutes`` with a
state ``override``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import BeforeValidator, Field, WithJsonSchema
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from passbridge.core.model import DoorState
from passbridge.core.policy import OVERRIDE_MINUTES_RANGE, RSSI_RANGE
from passbridge.enum_literals import DoorStateName, ReasonName, ResultName, SideName, one_of
from passbridge.site_file.shape import (
    ABSENT,
    DoorRef,
    Shape,
    SiteFile,
    Words,
)

# Non-empty, as the loader reads them (spaces are the id rule's business).
Filled = Annotated[str, Field(min_length=1)]

if TYPE_CHECKING:
    OverrideName: TypeAlias = str
else:
    OverrideName = one_of([*DoorState, "none"])

Rssi = Annotated[int, Field(ge=RSSI_RANGE[0], le=RSSI_RANGE[1], description="dBm")]
PhoneRef = Annotated[Filled, Field(description="a phone id (enrolled to a user, or a stranger)")]


class _Action(Shape):
    door: DoorRef
    side: SideName = "in"


class Card(_Action):
    number: Annotated[Filled, Field(description="a quoted badge number")]


class Pin(_Action):
    code: Annotated[Filled, Field(description="the quoted digits typed on the keypad")]


class Nfc(_Action):
    phone: PhoneRef


class Ble(_Action):
    phone: PhoneRef
    rssi: Rssi = -50


class Nearby(_Action):
    phone: PhoneRef
    rssi: Annotated[Rssi | Literal["none"] | None, Words(
        expected='a whole number of dBm from -127 to 20, or "none" (the phone is not seen)',
    )] = -70


class Remote(_Action):
    user: Filled


class Configure(Shape):
    """An admin change: ``override`` (with ``door``, and ``minutes`` unless
    ``none``) or ``lockdown`` (for ``door``, or the site without it)."""

    door: DoorRef = ABSENT
    override: Annotated[OverrideName, Field(
        description="a door state, or none to end the override")] = ABSENT
    minutes: Annotated[int, Field(ge=OVERRIDE_MINUTES_RANGE[0],
                                  le=OVERRIDE_MINUTES_RANGE[1])] = ABSENT
    lockdown: bool = ABSENT
    side: SideName = "in"


class Expect(Shape):
    result: ResultName = ABSENT
    reason: ReasonName = ABSENT
    user: str | None = None
    state: DoorStateName = ABSENT
    phone_status: Annotated[str, Field(
        pattern=r"^[0-9A-Fa-f]{4}$", description='four hex digits in quotes, such as "0101"',
    )] | None = None


def _result_alone(value: Any) -> Any:
    """``expect: granted`` is short for ``expect: {result: granted}``."""
    return {"result": value} if isinstance(value, str) else value


class Step(Shape):
    """One action at a time: ``at`` (site-local date and time) or ``after``
    (a duration since the step before), exactly one action, and ``expect``."""

    at: Annotated[dt.datetime | Annotated[str, Field(min_length=11)], WithJsonSchema({
        "type": "string", "minLength": 11,
        "description": "a site-local date and time such as 2026-11-30T09:00:00"}),
        Words(expected="a site-local date and time such as 2026-11-30T09:00:00")] = ABSENT
    after: Annotated[
        Annotated[str, Field(description="a duration such as 4s, 1m, 1m30s, 500ms")]
        | Annotated[float, Field(ge=0, description="seconds")],
        Words(expected="a duration such as 4s, 1m, 1m30s, 500ms (at most ten years)"),
    ] = ABSENT
    expect: Annotated[Expect, BeforeValidator(
        _result_alone, json_schema_input_type=ResultName | Expect,
    ), Words(expected="a result or a mapping of result, reason, user, state, phone_status",
             )] = ABSENT
    card: Card = ABSENT
    pin: Pin = ABSENT
    nfc: Nfc = ABSENT
    ble: Ble = ABSENT
    nearby: Nearby = ABSENT
    remote: Remote = ABSENT
    configure: Configure = ABSENT


class ScenarioFile(SiteFile):
    """A scenario (``passbridge scenario run``): a site, then steps."""

    name: str = ABSENT
    steps: Annotated[list[Step], Field(min_length=1), Words(
        expected="a non-empty list of steps")]


_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _EditorSchema(GenerateJsonSchema):
    """pydantic's schema, worded for editors: ``null`` allowed as a second
    type rather than an ``anyOf`` (so a wrong item deep in a list is flagged
    at its own place, not as "the whole list fits no choice"), and no
    ``default: null`` on keys that are simply optional."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        if isinstance(inner.get("type"), str):
            return {**inner, "type": [inner["type"], "null"]}
        return super().nullable_schema(schema)

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        if schema.get("default", ...) is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def file_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of ``site`` or ``scenario`` files (``passbridge schema``)."""
    models: dict[str, type[SiteFile]] = {"site": SiteFile, "scenario": ScenarioFile}
    model = models[kind]
    return {"$schema": _SCHEMA_DIALECT,
            **model.model_json_schema(schema_generator=_EditorSchema)}
