"""Reads and validates scenario files; every problem names file and place."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from passbridge.core.model import DoorState, Reason, Result, Side, Site
from passbridge.core.schedule import override_minutes_problem
from passbridge.errors import ConfigError, Problem
from passbridge.ids import id_problem
from passbridge.scenario import shape as shape_
from passbridge.scenario.model import ACTIONS, Scenario, Step
from passbridge.scenario.shape import ScenarioFile
from passbridge.site_file import load_document
from passbridge.site_file.shape_errors import check_shape
from passbridge.site_file.site import build_site, shape_context

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


MAX_STEP_SECONDS = 10 * 366 * 86400.0  # ten years: a scenario's clock stays in range


def parse_duration(text: Any) -> float | None:
    """``4s``, ``1m``, ``1m30s``, ``500ms``, ``2h``, ``1d`` or a number of seconds."""
    seconds = _duration_seconds(text)
    if seconds is None or not 0 <= seconds <= MAX_STEP_SECONDS:
        return None
    return seconds


def _duration_seconds(text: Any) -> float | None:
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return float(text) if text >= 0 else None
    if not isinstance(text, str):
        return None
    compact = text.replace(" ", "")
    if not compact:
        return None
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(compact):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total if pos == len(compact) else None


def load_scenario(path: Path, *, pin_key: bytes) -> Scenario:
    document, file = load_document(path)
    return parse_scenario(document, file=file, pin_key=pin_key, base_dir=path.parent)


def parse_scenario(
    document: Mapping[str, Any], *, file: str, pin_key: bytes, base_dir: Path | None = None
) -> Scenario:
    """The scenario, or ConfigError: first its shape (the models of
    ``scenario.shape``), then its site, then what its steps mean."""
    shape, problems = check_shape(
        ScenarioFile, document, file=file, context=shape_context(document))
    if shape is None:
        raise ConfigError(problems)
    site = build_site(shape, file=file, pin_key=pin_key, base_dir=base_dir)
    steps: list[Step] = []
    strangers: set[str] = set()
    previous_at: datetime | None = None
    for index, raw in enumerate(shape.steps):
        step = _parse_step(raw, index, file, site, problems, strangers)
        if step is None:
            continue
        if step.at is not None:
            if previous_at is not None and step.at < previous_at:
                problems.append(
                    Problem(
                        file,
                        f"{step.place}.at",
                        "time never goes backwards: this is earlier than a step before it",
                    )
                )
            previous_at = step.at
        steps.append(step)
    if problems:
        raise ConfigError(problems)
    name = Path(file).stem if shape.name is None else shape.name
    return Scenario(file, name, site, tuple(steps), frozenset(strangers))


def _parse_step(
    raw: shape_.Step, index: int, file: str, site: Site, problems: list[Problem],
    strangers: set[str],
) -> Step | None:
    place = f"steps[{index}]"
    before = len(problems)
    actions = [key for key in ACTIONS if getattr(raw, key) is not None]
    if len(actions) != 1:
        problems.append(
            Problem(
                file,
                place,
                f"expected exactly one action ({', '.join(ACTIONS)}), found {len(actions)}",
            )
        )
        return None
    action = actions[0]

    at = None if raw.at is None else _parse_at(raw.at, f"{place}.at", file, site, problems)
    after: float | None = None
    if raw.after is not None:
        after = parse_duration(raw.after)
        if after is None:
            problems.append(
                Problem(
                    file,
                    f"{place}.after",
                    "expected a duration such as 4s, 1m, 1m30s, 500ms (at most ten years)",
                )
            )
    if raw.at is not None and raw.after is not None:
        problems.append(Problem(file, place, "a step takes `at` or `after`, not both"))

    fields = getattr(raw, action)
    # A configure step's fields are what was written; others have their defaults (rssi).
    args = fields.model_dump(exclude_unset=action == "configure", exclude={"side"})
    side = Side(fields.side)
    _check_action(action, args, f"{place}.{action}", file, site, problems, strangers)

    expect = None
    if raw.expect is not None:
        expect = _parse_expect(raw.expect, f"{place}.expect", file, problems)
        if action == "configure" and set(expect) - {"state"}:
            problems.append(
                Problem(
                    file,
                    f"{place}.expect",
                    "a configure step decides nothing; only `state` may be expected",
                )
            )
        if "phone_status" in expect and action != "nfc":
            problems.append(
                Problem(
                    file,
                    f"{place}.expect.phone_status",
                    "only an `nfc` step tells a phone a reader status",
                )
            )
    if len(problems) > before:
        return None
    return Step(index, place, at, after, action, args, side, expect)


def _parse_at(
    value: datetime | str, place: str, file: str, site: Site, problems: list[Problem]
) -> datetime | None:
    moment: datetime | None = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        # YAML dates stay text (site_file.document): an impossible one such
        # as 2027-02-29T09:00:00 is this placed error, never a traceback.
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
    if moment is None:
        problems.append(
            Problem(file, place, "expected a site-local date and time such as 2026-11-30T09:00:00")
        )
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=site.timezone)
    # Naive times are site-local; in a DST fold the first occurrence is meant.
    return moment.astimezone(UTC)


def _check_action(
    action: str,
    args: dict[str, Any],
    place: str,
    file: str,
    site: Site,
    problems: list[Problem],
    strangers: set[str],
) -> None:
    """What the shape cannot say about an action's fields (door references
    were judged with the shape)."""
    if action == "pin" and not args["code"].isdigit():
        problems.append(Problem(file, f"{place}.code", "expected the digits typed on the keypad"))
    if action in ("nfc", "ble", "nearby"):
        problem = id_problem(args["phone"])
        if problem is not None:
            problems.append(Problem(file, f"{place}.phone", problem))
        elif args["phone"] not in site.user_by_phone:
            strangers.add(args["phone"])
    if action == "nearby" and args["rssi"] == "none":
        args["rssi"] = None  # the phone is not seen
    if action == "configure":
        _check_configure(args, place, file, site, problems)


def _check_configure(
    args: dict[str, Any], place: str, file: str, site: Site, problems: list[Problem]
) -> None:
    if ("override" in args) == ("lockdown" in args):
        problems.append(
            Problem(file, place, "expected either `override` (with `door`) or `lockdown`")
        )
        return
    if "lockdown" in args:
        if "minutes" in args:
            problems.append(Problem(file, f"{place}.minutes", "minutes go with `override`"))
        return
    if "door" not in args:
        problems.append(Problem(file, f"{place}.door", "an override needs the door"))
    override = args["override"]
    if override == "none":
        args["override"] = None
        return
    state = DoorState(override)
    args["override"] = state
    problem = override_minutes_problem(args.get("minutes"))
    if problem is not None:
        problems.append(Problem(file, f"{place}.minutes", problem))
    door = site.doors.get(args.get("door", ""))
    if state is DoorState.TWO_FACTOR and door is not None and not door.supports_two_factor:
        lacks = "keypad" if door.reader else "badge reader"
        problems.append(
            Problem(
                file,
                f"{place}.override",
                f"door {door.id!r}: two_factor needs both a badge reader and a keypad; "
                f"this door has no {lacks}",
            )
        )


def _parse_expect(
    value: shape_.Expect, place: str, file: str, problems: list[Problem]
) -> dict[str, Any]:
    """Only the keys the author wrote, as the core's values."""
    expect: dict[str, Any] = value.model_dump(exclude_unset=True)
    kinds: dict[str, type[Result] | type[Reason] | type[DoorState]] = {
        "result": Result, "reason": Reason, "state": DoorState,
    }
    for key, kind in kinds.items():
        if key in expect:
            expect[key] = kind(expect[key])
    if expect.get("phone_status") is not None:
        expect["phone_status"] = expect["phone_status"].upper()
    if (
        "result" in expect
        and "reason" in expect
        and expect["reason"].result is not expect["result"]
    ):
        problems.append(
            Problem(
                file,
                place,
                f"reason {expect['reason'].value} always comes with result "
                f"{expect['reason'].result.value}, not {expect['result'].value}",
            )
        )
    return expect
