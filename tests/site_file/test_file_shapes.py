"""The typed models of site and scenario files, and the JSON Schema editors get from them.

The models and the loaders must agree: a file the loader accepts, the models
accept (else an editor would flag a good file), and a shape the models
refuse, the loader refuses (else the schema would promise what loading does
not hold).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from passbridge.cli import main
from passbridge.errors import ConfigError
from passbridge.scenario.loader import parse_scenario
from passbridge.scenario.shape import ScenarioFile, file_schema
from passbridge.site_file import load_document, parse_site
from passbridge.site_file.shape import SiteFile
from tests.conftest import PROJECT, shared_path
from tests.site_file.test_site_file import _paths, _values, base

KEY = b"installation-secret"


def printed_schema(kind: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """What ``passbridge schema KIND`` prints."""
    assert main(["schema", kind]) == 0
    out = capsys.readouterr().out
    schema: dict[str, Any] = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def scenario_files() -> list[Path]:
    shared = shared_path("scenarios")
    return sorted([*shared.glob("*.yaml"), *(shared / "invalid").glob("*.yaml"),
                   *(PROJECT / "tests" / "scenarios").glob("*.yaml")])


def example_site() -> Path:
    return PROJECT / "examples" / "site.yaml"


def schema_errors(schema: dict[str, Any], document: Any) -> list[tuple[str, str]]:
    validator = jsonschema.Draft202012Validator(schema)
    return [(e.json_path, e.message) for e in validator.iter_errors(document)]


# --- the schema command ---------------------------------------------------------------


def test_the_site_schema_accepts_the_example_site(capsys: pytest.CaptureFixture[str]) -> None:
    schema = printed_schema("site", capsys)
    document, _ = load_document(example_site())
    assert schema_errors(schema, document) == []


def test_the_scenario_schema_accepts_every_shared_and_local_scenario(
    capsys: pytest.CaptureFixture[str],
) -> None:
    schema = printed_schema("scenario", capsys)
    files = scenario_files()
    assert len(files) >= 12
    for file in files:
        document, _ = load_document(file)
        assert schema_errors(schema, document) == [], file


def test_a_scenario_is_not_a_site_and_a_site_is_not_a_scenario(
    capsys: pytest.CaptureFixture[str],
) -> None:
    site_schema = printed_schema("site", capsys)
    scenario_schema = printed_schema("scenario", capsys)
    scenario, _ = load_document(shared_path("scenarios", "01-card-then-pin.yaml"))
    site, _ = load_document(example_site())
    assert schema_errors(site_schema, scenario)  # name, steps: unknown keys
    assert any("steps" in message for _, message in schema_errors(scenario_schema, site))


@pytest.mark.parametrize(
    ("where", "value", "path", "fragment"),
    [
        (("doors", 0, "schedule", 0, "stat"), "locked", "$.doors[0].schedule[0]",
         "'stat' was unexpected"),
        (("doors", 0, "unlock_seconds"), "5", "$.doors[0].unlock_seconds", "not of type"),
        (("doors", 0, "unlock_seconds"), 61, "$.doors[0].unlock_seconds", "maximum"),
        (("doors", 0, "schedule", 0, "end"), 1140, "$.doors[0].schedule[0].end", "not of type"),
        (("doors", 0, "schedule", 0, "start"), "24:00", "$.doors[0].schedule[0].start",
         "does not match"),
        (("doors", 0, "schedule", 0, "state"), "open", "$.doors[0].schedule[0].state",
         "is not one of"),
        (("users", 0, "pin"), 2468, "$.users[0].pin", "not of type"),
        (("users", 0, "cards", 0), 10001, "$.users[0].cards[0]", "not of type"),
        (("users", 0, "doors"), "every", "$.users[0].doors", "is not valid"),
    ],
)
def test_the_site_schema_refuses_what_an_editor_should_flag(
    capsys: pytest.CaptureFixture[str], where: tuple[Any, ...], value: Any, path: str,
    fragment: str,
) -> None:
    schema = printed_schema("site", capsys)
    document = copy.deepcopy(dict(load_document(example_site())[0]))
    target: Any = document
    for part in where[:-1]:
        target = target[part]
    target[where[-1]] = value
    errors = schema_errors(schema, document)
    assert len(errors) == 1, errors
    assert errors[0][0] == path and fragment in errors[0][1], errors


def test_the_schema_names_the_contract_ranges_and_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    door = printed_schema("site", capsys)["$defs"]["Door"]["properties"]
    assert (door["unlock_seconds"]["minimum"], door["unlock_seconds"]["maximum"]) == (1, 60)
    assert (door["pin_timeout"]["minimum"], door["pin_timeout"]["maximum"]) == (3, 60)
    configure = printed_schema("scenario", capsys)["$defs"]["Configure"]["properties"]
    assert configure["minutes"]["maximum"] == 10080


def test_an_unknown_schema_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["schema", "door"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# --- the models agree with the loaders ---------------------------------------------------


def test_models_and_loaders_agree_on_every_example_and_scenario_file() -> None:
    document, label = load_document(example_site())
    parse_site(document, file=label, pin_key=KEY, base_dir=example_site().parent)
    SiteFile.model_validate(document)
    for file in scenario_files():
        document, label = load_document(file)
        ScenarioFile.model_validate(document)  # the shape of every one is right
        if file.parent.name == "invalid":  # refused for what it means, not its shape
            with pytest.raises(ConfigError):
                parse_scenario(document, file=label, pin_key=KEY, base_dir=file.parent)
        else:
            parse_scenario(document, file=label, pin_key=KEY, base_dir=file.parent)


def _damaged(data: st.DataObject, doc: Any) -> Any:
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(_paths(doc)))
        if not where:
            return data.draw(_values)
        parent: Any = doc
        for part in where[:-1]:
            parent = parent[part]
        parent[where[-1]] = data.draw(_values)
    return doc


def _as_text(doc: Any) -> Any:
    """The document as a YAML file would hold it (dates as text), so that the
    JSON Schema and the loader judge the same thing."""
    return json.loads(json.dumps(doc, default=str))


def _refused(schema: dict[str, Any], doc: Any, load: Any) -> None:
    """Loading ``doc`` gives a Site or Scenario, or ConfigError (never another
    exception); when the printed schema refuses it, loading refuses it too."""
    try:
        load(doc)
    except ConfigError as error:
        assert error.problems and all(p.file == "s" for p in error.problems)
        return
    assert schema_errors(schema, doc) == [], doc


@pytest.mark.slow  # property-heavy
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_what_the_site_schema_refuses_loading_refuses(data: st.DataObject) -> None:
    doc = _as_text(_damaged(data, copy.deepcopy(base())))
    schema = file_schema("site")
    _refused(schema, doc, lambda d: parse_site(d, file="s", pin_key=KEY))


def _scenario() -> dict[str, Any]:
    document, _ = load_document(shared_path("scenarios", "11-troubleshoot-override.yaml"))
    doc = copy.deepcopy(dict(document))
    doc["steps"] += [
        {"after": "1s", "nearby": {"phone": "p", "door": "front", "rssi": "none"},
         "expect": {"result": "denied", "user": None}},
        {"after": 2, "ble": {"phone": "p", "door": "front", "rssi": -40, "side": "in"}},
        {"after": "1m", "configure": {"lockdown": True}, "expect": {"state": "locked"}},
        {"after": "1m", "nfc": {"phone": "p", "door": "front"},
         "expect": {"phone_status": "0101"}},
        {"after": "1m", "remote": {"user": "alice", "door": "front"}, "expect": "denied"},
    ]
    return doc


def test_the_scenario_used_below_loads() -> None:
    doc = _scenario()
    ScenarioFile.model_validate(doc)
    parse_scenario(doc, file="s", pin_key=KEY)


def test_an_override_for_a_door_that_is_not_a_name_is_a_placed_error() -> None:
    """Found by the property below: a list as the door of an override was a TypeError."""
    doc = _scenario()
    doc["steps"][0]["configure"] = {"door": [], "override": "locked", "minutes": 5}
    with pytest.raises(ConfigError) as caught:
        parse_scenario(doc, file="s.yaml", pin_key=KEY)
    assert [str(p) for p in caught.value.problems] == [
        "s.yaml: steps[0].configure.door: expected a door id of this site; got a list"]


@pytest.mark.slow  # property-heavy
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_what_the_scenario_schema_refuses_loading_refuses(data: st.DataObject) -> None:
    doc = _as_text(_damaged(data, _scenario()))
    assume(isinstance(doc, dict))  # load_document hands parse_scenario only mappings
    schema = file_schema("scenario")
    _refused(schema, doc, lambda d: parse_scenario(d, file="s", pin_key=KEY))


# --- the models' errors in the loader's words ------------------------------------------


def test_check_names_the_place_of_an_unknown_key_and_a_wrong_type_with_their_hints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        "site: {id: hq, timezone: UTC}\n"
        "doors:\n"
        "  - id: front\n"
        "    unlock_seconds: 61\n"
        "    schedule:\n"
        "      - {days: [mon], start: 8:00, stat: locked}\n"
        "users:\n"
        "  - {id: alice, cards: [10001], pin: 2468, doors: [front, back]}\n"
    )
    assert main(["check", "--site", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines() == [
        f"error: {path}: doors[0].unlock_seconds: expected a whole number from 1 to 60; "
        "got the number 61",
        f"error: {path}: doors[0].schedule[0].start: expected a quoted time \"HH:MM\" from "
        "\"00:00\" to \"23:59\"; got the number 480 (YAML reads an unquoted time like 19:00 "
        "as a number: quote it)",
        f"error: {path}: doors[0].schedule[0].state: required, but missing",
        f"error: {path}: doors[0].schedule[0].stat: unknown key (did you mean 'state'?); "
        "expected one of: id, days, start, end, state",
        f"error: {path}: users[0].cards[0]: expected a non-empty string; got the number 10001 "
        "(quote it: a bare number loses leading zeros)",
        f"error: {path}: users[0].pin: expected the entry code as a quoted string of 4-16 "
        "digits (0-9); got a number (a bare number loses its leading zeros)",
        f"error: {path}: users[0].doors[1]: expected a door id of this site (front); "
        "got the string 'back'",
    ]


def test_a_scenario_step_names_the_place_of_an_unknown_key_and_a_wrong_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "site: {id: hq, timezone: UTC}\n"
        "doors: [{id: front}]\n"
        "steps:\n"
        "  - {at: 2026-11-30T09:00:00, card: {numbr: '1', door: front}}\n"
        "  - {after: 1s, ble: {phone: p, door: front, rssi: '-40'}, expect: grantd}\n"
    )
    assert main(["scenario", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines() == [
        f"error: {path}: steps[0].card.number: required, but missing",
        f"error: {path}: steps[0].card.numbr: unknown key (did you mean 'number'?); "
        "expected one of: door, side, number",
        f"error: {path}: steps[1].expect.result: expected one of granted | denied | pending; "
        "got the string 'grantd'",
        f"error: {path}: steps[1].ble.rssi: expected a whole number from -127 to 20; "
        "got the string '-40'",
    ]


def test_an_id_too_long_says_the_id_rule() -> None:
    doc = base()
    doc["doors"][1]["id"] = "g" * 65
    with pytest.raises(ConfigError) as caught:
        parse_site(doc, file="s", pin_key=KEY)
    (problem,) = caught.value.problems
    assert problem.path == "doors[1].id" and "1-64 letters or digits" in problem.message
