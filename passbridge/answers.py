"""The JSON shape of a decision, declared once as a typed model.

A decision reaches people and programs as JSON in three places: the HTTP
answers (``Decision.to_json``, also the body of each ``decision`` event),
the OpenAPI document's ``Decision`` component (``service.openapi``, built
from this model), and the scenario rig, which reads the answers of remote
and nearby unlocks back (``scenario.rig``, through this model). The core
still writes the JSON itself (``core.decision``: it stays free of pydantic,
and the hot path is a plain dict); tests/core/test_decision_answer.py holds what
it writes against this model, field by field.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from passbridge.enum_literals import (
    DoorStateName,
    FactorName,
    ReasonName,
    ResultName,
    SideName,
)


class DecisionAnswer(BaseModel):
    """A door decision as answered (interfaces.md, plus factor, credential, detail)."""

    model_config = ConfigDict(extra="forbid", strict=True, title="Decision")

    decision_id: str
    result: ResultName
    reason: ReasonName
    door: str
    side: SideName
    user: str | None = Field(description="the user decided for, when known")
    factor: FactorName | None
    credential: str | None = Field(
        description="safe to log: a phone credential id or a masked badge number")
    state: DoorStateName | None = Field(description="the door's state when deciding")
    state_source: str | None = Field(description="what set that state")
    unlock_seconds: int | None
    revision: str = Field(description="the site revision decided on")
    at: Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    detail: str | None = Field(description="for operators; never a secret")
