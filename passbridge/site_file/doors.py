"""The ``doors:`` section: each door's hardware, timings and ids; schedules are in schedule.py."""

from __future__ import annotations

from dataclasses import replace

from passbridge.core.model import Door
from passbridge.core.schedule import two_factor_lacks
from passbridge.site_file import shape
from passbridge.site_file.checker import Checker
from passbridge.site_file.schedule import parse_exceptions, parse_windows


def parse_doors(check: Checker, doors: list[shape.Door]) -> dict[str, Door]:
    """The doors by id; a door with problems is reported and left out."""
    built: dict[str, Door] = {}
    first_path: dict[str, str] = {}
    for index, door in enumerate(doors):
        path = f"doors[{index}]"
        before = check.count
        if door.id in first_path:
            check.fail(f"{path}.id", f"door {door.id!r} is already defined at "
                                     f"{first_path[door.id]}")
            continue
        first_path[door.id] = path
        built_door = _parse_door(check, door, path)
        if check.count == before:
            built[door.id] = built_door
    return built


def _parse_door(check: Checker, door: shape.Door, path: str) -> Door:
    if door.in_out and not door.reader and "reader" in door.model_fields_set:
        check.fail(f"{path}.in_out", f"door {door.id!r}: an In/Out door needs badge readers "
                                     "(reader: true)")
    built = Door(
        id=door.id,
        name=door.name or "",
        reader=door.reader,
        keypad=door.keypad,
        in_out=door.in_out,
        unlock_seconds=door.unlock_seconds,
        pin_timeout=door.pin_timeout,
        ble_rssi_min=door.ble_rssi_min,
        strict_two_factor=door.strict_two_factor,
    )
    lacks = two_factor_lacks(built)
    windows = parse_windows(check, door.schedule or [], path, door.id, lacks)
    exceptions = parse_exceptions(check, door.exceptions or [], path, door.id, lacks)
    return replace(built, schedule=windows, exceptions=exceptions)
