"""Reads and validates scenario files; every problem names file and place."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from passbridge.core.model import DoorState, Reason, Result, Side, Site
from passbridge.core.schedule import override_minutes_problem
from passbridge.errors import ConfigError, Problem
from passbridge.ids import id_problem
from passbridge.scenario.model import ACTIONS, Scenario, Step
from passbridge.site_file import load_document, parse_site

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_STEP_KEYS = {"at", "after", "expect", *ACTIONS}
_EXPECT_KEYS = {"result", "reason", "user", "state", "phone_status"}
_PHONE_STATUS = re.compile(r"[0-9A-Fa-f]{4}")
_ACTION_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    # action: (required fields, optional fields); ``side`` is allowed everywhere
    "card": ({"number", "door"}, set()),
    "pin": ({"code", "door"}, set()),
    "nfc": ({"phone", "door"}, set()),
    "ble": ({"phone", "door"}, {"rssi"}),
    "nearby": ({"phone", "door"}, {"rssi"}),
    "remote": ({"user", "door"}, set()),
    "configure": (set(), {"door", "override", "minutes", "lockdown"}),
}
DEFAULT_RSSI = {"ble": -50, "nearby": -70}


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
    problems: list[Problem] = []
    site: Site | None = None
    try:
        site = parse_site(
            document,
            file=file,
            pin_key=pin_key,
            extra_keys=frozenset({"name", "steps"}),
            base_dir=base_dir,
        )
    except ConfigError as error:
        problems.extend(error.problems)

    name = document.get("name", Path(file).stem)
    if not isinstance(name, str):
        problems.append(Problem(file, "name", "expected a string"))
        name = Path(file).stem
    raw_steps = document.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append(Problem(file, "steps", "expected a non-empty list of steps"))
        raw_steps = []

    steps: list[Step] = []
    strangers: set[str] = set()
    if site is not None:
        previous_at: datetime | None = None
        for index, raw in enumerate(raw_steps):
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
    assert site is not None
    return Scenario(file, name, site, tuple(steps), frozenset(strangers))


def _parse_step(
    raw: Any, index: int, file: str, site: Site, problems: list[Problem], strangers: set[str]
) -> Step | None:
    place = f"steps[{index}]"
    if not isinstance(raw, Mapping):
        problems.append(Problem(file, place, "expected a mapping with one action"))
        return None
    before = len(problems)
    for key in raw:
        if key not in _STEP_KEYS:
            problems.append(
                Problem(
                    file,
                    f"{place}.{key}",
                    f"unknown key; expected one of at, after, expect, {', '.join(ACTIONS)}",
                )
            )
    actions = [key for key in ACTIONS if key in raw]
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

    at = _parse_at(raw.get("at"), f"{place}.at", file, site, problems) if "at" in raw else None
    after: float | None = None
    if "after" in raw:
        after = parse_duration(raw["after"])
        if after is None:
            problems.append(
                Problem(
                    file,
                    f"{place}.after",
                    "expected a duration such as 4s, 1m, 1m30s, 500ms (at most ten years)",
                )
            )
    if "at" in raw and "after" in raw:
        problems.append(Problem(file, place, "a step takes `at` or `after`, not both"))

    args = raw[action]
    if not isinstance(args, Mapping):
        problems.append(
            Problem(file, f"{place}.{action}", "expected a mapping of the action's fields")
        )
        return None
    args = dict(args)
    side = _parse_side(args.pop("side", "in"), f"{place}.{action}.side", file, problems)
    _check_action(action, args, f"{place}.{action}", file, site, problems, strangers)

    expect = None
    if "expect" in raw:
        expect = _parse_expect(raw["expect"], f"{place}.expect", file, site, problems)
        if expect is not None and action == "configure" and set(expect) - {"state"}:
            problems.append(
                Problem(
                    file,
                    f"{place}.expect",
                    "a configure step decides nothing; only `state` may be expected",
                )
            )
        if expect is not None and "phone_status" in expect and action != "nfc":
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
    value: Any, place: str, file: str, site: Site, problems: list[Problem]
) -> datetime | None:
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and len(value) > len("YYYY-MM-DD"):
        # YAML dates stay text (site_file.document): an impossible one such
        # as 2027-02-29T09:00:00 is this placed error, never a traceback.
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
    elif isinstance(value, date):
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


def _parse_side(value: Any, place: str, file: str, problems: list[Problem]) -> Side:
    try:
        return Side(value)
    except ValueError:
        problems.append(Problem(file, place, "expected `in` or `out`"))
        return Side.IN


def _check_action(
    action: str,
    args: dict[str, Any],
    place: str,
    file: str,
    site: Site,
    problems: list[Problem],
    strangers: set[str],
) -> None:
    required, optional = _ACTION_FIELDS[action]
    for key in args:
        if key not in required | optional:
            allowed = ", ".join(sorted(required | optional | {"side"}))
            problems.append(Problem(file, f"{place}.{key}", f"unknown field; expected {allowed}"))
    for key in sorted(required - set(args)):
        problems.append(Problem(file, f"{place}.{key}", "required field is missing"))
    door = args.get("door")
    if "door" in args and (not isinstance(door, str) or door not in site.doors):
        problems.append(Problem(file, f"{place}.door", f"no door {door!r} in this scenario's site"))
    for key in ("number", "code", "phone", "user"):
        if key in args and not (isinstance(args[key], str) and args[key]):
            hint = " (quote it so leading zeros survive)" if isinstance(args[key], int) else ""
            problems.append(Problem(file, f"{place}.{key}", f"expected a non-empty string{hint}"))
    if action == "pin" and isinstance(args.get("code"), str) and not args["code"].isdigit():
        problems.append(Problem(file, f"{place}.code", "expected the digits typed on the keypad"))
    if action in ("nfc", "ble", "nearby") and isinstance(args.get("phone"), str):
        problem = id_problem(args["phone"]) if args["phone"] else None
        if problem is not None:
            problems.append(Problem(file, f"{place}.phone", problem))
        elif args["phone"] not in site.user_by_phone:
            strangers.add(args["phone"])
    if action in DEFAULT_RSSI:
        rssi = args.get("rssi", DEFAULT_RSSI[action])
        if action == "nearby" and (rssi is None or rssi == "none"):
            args["rssi"] = None
        elif isinstance(rssi, int) and not isinstance(rssi, bool) and -127 <= rssi <= 20:
            args["rssi"] = rssi
        else:
            expected = "an integer dBm (-127..20)" + (" or `none`" if action == "nearby" else "")
            problems.append(Problem(file, f"{place}.rssi", f"expected {expected}"))
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
        if not isinstance(args["lockdown"], bool):
            problems.append(Problem(file, f"{place}.lockdown", "expected true or false"))
        if "minutes" in args:
            problems.append(Problem(file, f"{place}.minutes", "minutes go with `override`"))
        return
    if "door" not in args:
        problems.append(Problem(file, f"{place}.door", "an override needs the door"))
    override = args["override"]
    if override is None or override == "none":
        args["override"] = None
        return
    try:
        state = DoorState(override)
    except ValueError:
        problems.append(
            Problem(
                file,
                f"{place}.override",
                "expected a door state or `none`: " + ", ".join(s.value for s in DoorState),
            )
        )
        return
    args["override"] = state
    problem = override_minutes_problem(args.get("minutes"))
    if problem is not None:
        problems.append(Problem(file, f"{place}.minutes", problem))
    named = args.get("door")
    door = site.doors.get(named) if isinstance(named, str) else None  # else reported above
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
    value: Any, place: str, file: str, site: Site, problems: list[Problem]
) -> dict[str, Any] | None:
    if isinstance(value, str):
        value = {"result": value}
    if not isinstance(value, Mapping):
        problems.append(
            Problem(file, place, "expected a result or a mapping of result, reason, user, state")
        )
        return None
    expect: dict[str, Any] = {}
    for key, item in value.items():
        if key not in _EXPECT_KEYS:
            problems.append(
                Problem(
                    file,
                    f"{place}.{key}",
                    "unknown key; expected result, reason, user, state, phone_status",
                )
            )
            continue
        if key == "phone_status":
            if item is None or (isinstance(item, str) and _PHONE_STATUS.fullmatch(item)):
                expect[key] = item.upper() if item is not None else None
            else:
                problems.append(
                    Problem(
                        file,
                        f"{place}.{key}",
                        'expected four hex digits in quotes (such as "0101"), or null',
                    )
                )
            continue
        kinds: dict[str, type[Result] | type[Reason] | type[DoorState]] = {
            "result": Result,
            "reason": Reason,
            "state": DoorState,
        }
        if key in kinds:
            try:
                expect[key] = kinds[key](item)
            except ValueError:
                choices = ", ".join(v.value for v in kinds[key])
                problems.append(Problem(file, f"{place}.{key}", f"expected one of {choices}"))
        elif item is not None and not isinstance(item, str):
            problems.append(Problem(file, f"{place}.user", "expected a user id or null"))
        else:
            expect[key] = item
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
