"""One model of a decision's JSON (passbridge.answers): what the core writes,
what the OpenAPI document says and what the scenario rig reads back agree."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from passbridge.answers import DecisionAnswer
from passbridge.core.decision import Decision
from passbridge.core.model import DoorState, Factor, Reason, Result
from passbridge.scenario.rig import StepOutcome
from passbridge.service.openapi import document
from tests.core.test_engine import MONDAY_9, SITE
from tests.engine_helpers import Harness


def decisions() -> list[Decision]:
    """Granted, denied and pending decisions, with and without a user and a factor."""
    h = Harness(SITE, MONDAY_9)
    return [
        h.card("front", "10001"),  # pending: two-factor wants the PIN
        h.pin("front", "2468"),  # granted
        h.card("front", "77777"),  # denied: nobody's badge
        h.pin("readeronly", "2468"),  # a door without keypad
        h.card("lobby", "20002"),  # no access to that door
    ]


def test_what_the_core_writes_is_exactly_the_model() -> None:
    seen: set[tuple[Result, bool]] = set()
    for decision in decisions():
        body = decision.to_json()
        answer = DecisionAnswer.model_validate(body)  # strict: no coercion, no extra key
        assert set(body) == set(DecisionAnswer.model_fields)
        assert answer.model_dump() == body
        seen.add((decision.result, decision.user is None))
    assert {result for result, _ in seen} == set(Result)
    assert {anonymous for _, anonymous in seen} == {True, False}


def test_the_openapi_decision_is_the_model() -> None:
    component = document()["components"]["schemas"]["Decision"]
    fields = set(DecisionAnswer.model_fields)
    assert set(component["properties"]) == fields
    assert set(component["required"]) == fields
    props = component["properties"]
    assert props["reason"]["enum"] == [r.value for r in Reason]
    assert props["factor"]["nullable"] is True
    assert props["factor"]["enum"] == [*(f.value for f in Factor), None]
    assert props["state"]["enum"] == [*(s.value for s in DoorState), None]
    assert props["at"]["format"] == "date-time"
    assert "additionalProperties" not in component  # a simulated tap adds phone_status


def test_the_rig_reads_answers_through_the_model() -> None:
    body: dict[str, Any] = decisions()[1].to_json()
    outcome = StepOutcome.of_json(body)
    assert (outcome.result, outcome.reason, outcome.user) == (
        Result.GRANTED, Reason.TWO_FACTOR_COMPLETE, "alice")
    assert outcome.state is DoorState.TWO_FACTOR
    for broken in ({**body, "result": "maybe"}, {k: v for k, v in body.items() if k != "at"},
                   {**body, "unlock_seconds": "5"}):
        with pytest.raises(ValidationError):
            StepOutcome.of_json(broken)
