"""Random but well-formed scenario files: the runner always answers every step
with a decision (never an error, never a crash) and exits 0 or 1."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from passbridge.scenario.runner import run_files

DOORS = ["front", "lab", "lobby", "garage"]
SITE: dict[str, Any] = {
    "site": {"id": "hq", "timezone": "America/New_York"},
    "doors": [
        {"id": "front", "reader": True, "keypad": True, "schedule": [
            {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "07:00", "end": "19:00",
             "state": "two_factor"}]},
        {"id": "lab", "reader": True, "keypad": True, "in_out": True, "strict_two_factor": True,
         "schedule": [{"days": ["sat", "sun"], "start": "22:00", "end": "06:00",
                       "state": "locked"}]},
        {"id": "lobby", "reader": True, "exceptions": [
            {"id": "party", "date": "2026-11-30", "start": "12:00", "end": "14:00",
             "state": "unlocked", "repeat": "weekly"}]},
        {"id": "garage", "reader": False, "keypad": True},
    ],
    "users": [
        {"id": "alice", "cards": ["1"], "pin": "1111", "phones": ["alice-phone"],
         "doors": "all", "remote_unlock": True, "role": "site_admin"},
        {"id": "bob", "cards": ["2"], "doors": ["front", "lobby"]},
        {"id": "carol", "cards": ["3"], "pin": "3333", "doors": ["garage", "lab"],
         "enabled": False},
    ],
}

door = st.sampled_from(DOORS)
side = st.sampled_from(["in", "out"])
action = st.one_of(
    st.fixed_dictionaries({"card": st.fixed_dictionaries(
        {"number": st.sampled_from(["1", "2", "3", "9"]), "door": door, "side": side})}),
    st.fixed_dictionaries({"pin": st.fixed_dictionaries(
        {"code": st.sampled_from(["1111", "3333", "0000"]), "door": door, "side": side})}),
    st.fixed_dictionaries({"remote": st.fixed_dictionaries(
        {"user": st.sampled_from(["alice", "bob", "zed"]), "door": door, "side": side})}),
    st.fixed_dictionaries({"configure": st.one_of(
        st.fixed_dictionaries({"lockdown": st.booleans()}),
        st.fixed_dictionaries({"door": st.sampled_from(["front", "lab"]),
                               "override": st.sampled_from(
                                   ["access_controlled", "two_factor", "locked", "none"]),
                               "minutes": st.integers(1, 90)}),
    )}),
)
timing = st.one_of(st.just({}), st.fixed_dictionaries(
    {"after": st.sampled_from(["1s", "14s", "16s", "1m", "61s", "2h", "1d", "3d"])}))
scenario = st.lists(st.tuples(timing, action), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario)
def test_well_formed_scenarios_always_decide(tmp_path: Path, steps: list[Any]) -> None:
    document = dict(SITE, name="fuzz", steps=[
        {"at": "2026-11-28T21:30:00", **steps[0][1]},
        *({**t, **a} for t, a in steps[1:]),
    ])
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document))
    out, err = io.StringIO(), io.StringIO()
    code = run_files([str(path)], as_json=True, out=out, err=err)
    assert code == 0, err.getvalue()  # no expectations, so nothing can fail
    (report,) = json.loads(out.getvalue())["scenarios"]
    assert len(report["steps"]) == len(steps)
    for step in report["steps"]:
        assert "error" not in step, step
        if step["action"] != "configure":
            assert step["result"] in ("granted", "denied", "pending")
            assert step["reason"]
