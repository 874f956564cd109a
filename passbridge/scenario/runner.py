"""Runs scenarios step by step and reports each expectation.

Each scenario gets a fresh rig (clock, keys, core, audit log, radios) so
scenarios never leak state into each other; see scenario.rig.
"""

from __future__ import annotations

import json
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from passbridge.errors import ConfigError
from passbridge.scenario.loader import load_scenario
from passbridge.scenario.model import Scenario, Step
from passbridge.scenario.rig import VIA_DIRECT, ScenarioRig, StepOutcome

EXIT_OK, EXIT_FAILED, EXIT_UNLOADABLE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class StepReport:
    step: Step
    at: datetime
    outcome: StepOutcome

    @property
    def ok(self) -> bool | None:
        if self.step.expect is None:
            return None if self.outcome.error is None else False
        if self.outcome.error is not None:
            return False
        return all(self._actual(key) == value for key, value in self.step.expect.items())

    def _actual(self, key: str) -> Any:
        return getattr(self.outcome, key)

    def to_json(self, site_tz: Any) -> dict[str, Any]:
        o = self.outcome
        expected = None
        if self.step.expect is not None:
            expected = {k: getattr(v, "value", v) for k, v in self.step.expect.items()}
        return {
            "index": self.step.index,
            "at": self.at.astimezone(site_tz).isoformat(),
            "action": self.step.action,
            "result": o.result.value if o.result else None,
            "reason": o.reason.value if o.reason else None,
            "user": o.user,
            "state": o.state.value if o.state else None,
            "expected": expected,
            "ok": self.ok,
            **({"error": o.error} if o.error else {}),
            **self._phone_json(),
        }

    def _phone_json(self) -> dict[str, Any]:
        """nfc steps only: what the phone was told (see docs/decisions.md)."""
        if self.step.action != "nfc" or self.outcome.error is not None:
            return {}
        o = self.outcome
        return {"phone_status": o.phone_status,
                **({"phone_refusal": o.phone_refusal} if o.phone_refusal else {})}


@dataclass(frozen=True, slots=True)
class ScenarioReport:
    scenario: Scenario
    steps: list[StepReport]

    @property
    def passed(self) -> bool:
        return all(step.ok is not False for step in self.steps)


async def run_scenario(scenario: Scenario, pin_key: bytes, *, via: str = VIA_DIRECT
                       ) -> ScenarioReport:
    """``via``: how card and pin steps enter (rig.VIAS; ``osdp``: simulated
    OSDP readers and keypads through the service's Control Panel)."""
    first = scenario.steps[0]
    start = first.at if first.at is not None else datetime.now(UTC).replace(microsecond=0)
    rig = await ScenarioRig.start(scenario, pin_key=pin_key, start=start, via=via)
    reports: list[StepReport] = []
    try:
        for step in scenario.steps:
            try:
                if step.at is not None:
                    rig.clock.set(step.at)
                elif step.after is not None:
                    rig.clock.advance(step.after)
            except (ValueError, OverflowError) as error:
                outcome = StepOutcome(error=f"{step.place}: the clock cannot go there ({error})")
                reports.append(StepReport(step, rig.clock.now(), outcome))
                break
            at = rig.clock.now()
            outcome = await rig.perform(step)
            reports.append(StepReport(step, at, outcome))
    finally:
        await rig.close()
    return ScenarioReport(scenario, reports)


def describe_step(step: Step) -> str:
    """One line for a step, never its entry code (the CLI report and the console's table)."""
    a = step.args
    side = "" if step.side.value == "in" else "/out"
    if step.action == "card":
        return f"card {a['door']}{side} #{a['number']}"
    if step.action == "pin":
        return f"pin {a['door']}{side} " + "*" * len(a["code"])  # never the code
    if step.action in ("nfc", "ble", "nearby"):
        rssi = f" rssi={a['rssi']}" if "rssi" in a else ""
        return f"{step.action} {a['door']}{side} {a['phone']}{rssi}"
    if step.action == "remote":
        return f"remote {a['door']}{side} user={a['user']}"
    if "lockdown" in a:
        where = f" {a['door']}" if a.get("door") else ""
        return f"configure lockdown={'on' if a['lockdown'] else 'off'}{where}"
    state = a["override"].value if a["override"] else "none"
    minutes = f" for {a['minutes']}m" if a.get("minutes") else ""
    return f"configure {a['door']} override={state}{minutes}"


def _line(report: StepReport, site_tz: Any) -> str:
    o = report.outcome
    when = report.at.astimezone(site_tz).isoformat()
    if o.error is not None:
        got = f"error: {o.error}"
    elif o.result is None and o.state is None:
        got = "done"
    elif o.result is None:
        got = f"state {o.state.value if o.state else '?'} ({o.state_source})"
    else:
        got = f"{o.result.value} {o.reason.value if o.reason else ''}".rstrip()
        if o.user:
            got += f" user={o.user}"
        if o.state:
            got += f" state={o.state.value}"
        if report.step.action == "nfc":
            got += f" phone={o.phone_status or 'nothing'}"
            if o.phone_refusal:
                got += f" refused {o.phone_refusal}"
    verdict = ""
    if report.ok is True:
        verdict = "ok"
    elif report.ok is False:
        assert report.step.expect is not None or o.error is not None
        wanted = ", ".join(
            f"{k}={getattr(v, 'value', v)}" for k, v in (report.step.expect or {}).items()
        )
        verdict = f"FAILED, expected {wanted}" if wanted else "FAILED"
    step = describe_step(report.step)
    return f"  [{report.step.index}] {when} {step} -> {got}  {verdict}".rstrip()


def run_files(
    paths: list[str], *, as_json: bool, out: TextIO | None = None, err: TextIO | None = None,
    via: str = VIA_DIRECT,
) -> int:
    # Resolved per call: a default bound at import would outlive a redirected stdout.
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    import asyncio

    pin_key = secrets.token_bytes(32)
    scenarios: list[Scenario] = []
    unloadable = False
    for name in paths:
        path = Path(name)
        try:
            scenarios.append(load_scenario(path, pin_key=pin_key))
        except ConfigError as error:
            unloadable = True
            for problem in error.problems:
                print(f"error: {problem}", file=err)
        except OSError as error:
            unloadable = True
            print(f"error: {name}: cannot read: {error.strerror or error}", file=err)

    reports: list[ScenarioReport] = []
    for scenario in scenarios:
        reports.append(asyncio.run(run_scenario(scenario, pin_key, via=via)))

    passed = sum(1 for r in reports for s in r.steps if s.step.expect is not None and s.ok)
    failed = sum(1 for r in reports for s in r.steps if s.ok is False)
    if as_json:
        body = {
            "scenarios": [
                {
                    "file": r.scenario.file,
                    "name": r.scenario.name,
                    "passed": r.passed,
                    "steps": [s.to_json(r.scenario.site.timezone) for s in r.steps],
                }
                for r in reports
            ]
        }
        print(json.dumps(body, indent=2), file=out)
    else:
        for r in reports:
            print(f"{r.scenario.file}: {r.scenario.name}", file=out)
            for s in r.steps:
                print(_line(s, r.scenario.site.timezone), file=out)
        print(f"{passed} passed, {failed} failed", file=out)
    if unloadable:
        return EXIT_UNLOADABLE
    return EXIT_FAILED if failed else EXIT_OK
