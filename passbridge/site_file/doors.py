"""The ``doors:`` section: each door's hardware, timings and ids; schedules are in schedule.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from passbridge.core.model import Door
from passbridge.core.schedule import two_factor_lacks
from passbridge.site_file.checker import Checker
from passbridge.site_file.schedule import parse_exceptions, parse_windows
from passbridge.site_file.shape import PIN_TIMEOUT_RANGE, RSSI_RANGE, UNLOCK_SECONDS_RANGE

_DOOR_KEYS = ("name", "reader", "keypad", "in_out", "unlock_seconds", "pin_timeout",
              "ble_rssi_min", "strict_two_factor", "schedule", "exceptions")


def parse_doors(check: Checker, top: Mapping[str, Any]) -> dict[str, Door | None] | None:
    """Doors by id; None for a door whose entry has problems (its id still counts).

    None overall when some door's id could not be read: references to doors
    cannot be judged then, and reporting them would only bury the real problem.
    """
    doors: dict[str, Door | None] = {}
    first_path: dict[str, str] = {}
    complete = top.get("doors") is None or isinstance(top.get("doors"), list)
    for path, item in check.items(top, "doors", ""):
        before = check.count
        m = check.mapping(item, path, required=("id",), optional=_DOOR_KEYS)
        if m is None:
            complete = False
            continue
        door_id = check.ident(m, "id", path)
        complete = complete and bool(door_id)
        if door_id and door_id in first_path:
            check.fail(f"{path}.id", f"door {door_id!r} is already defined at "
                                     f"{first_path[door_id]}")
            continue
        if door_id:
            first_path[door_id] = path
        door = _parse_door(check, m, path, door_id)
        if door_id:
            doors[door_id] = door if check.count == before else None
    return doors if complete else None


def _parse_door(check: Checker, m: Mapping[str, Any], path: str, door_id: str) -> Door:
    reader = check.flag(m, "reader", path, True)
    keypad = check.flag(m, "keypad", path, False)
    in_out = check.flag(m, "in_out", path, False)
    if in_out and not reader and "reader" in m:
        check.fail(f"{path}.in_out", f"door {door_id!r}: an In/Out door needs badge readers "
                                     "(reader: true)")
    door = Door(
        id=door_id,
        name=check.text(m, "name", path),
        reader=reader,
        keypad=keypad,
        in_out=in_out,
        unlock_seconds=check.integer(m, "unlock_seconds", path, 5, UNLOCK_SECONDS_RANGE),
        pin_timeout=check.integer(m, "pin_timeout", path, 15, PIN_TIMEOUT_RANGE),
        ble_rssi_min=check.integer(m, "ble_rssi_min", path, -60, RSSI_RANGE),
        strict_two_factor=check.flag(m, "strict_two_factor", path, False),
    )
    lacks = two_factor_lacks(door)
    windows = parse_windows(check, m, path, door_id, lacks)
    exceptions = parse_exceptions(check, m, path, door_id, lacks)
    return replace(door, schedule=windows, exceptions=exceptions)

