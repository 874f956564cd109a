"""Every door state x factor x user x door setting, against the order of
checks written in docs/decisions.md, computed here independently."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest

from passbridge.core.model import Factor, Reason, Side
from tests.engine_helpers import Harness

STATES = ["access_controlled", "two_factor", "unlocked", "locked", "lockdown"]
DOORS = {  # id: (in_out, strict)
    "plain": (False, False),
    "strict": (False, True),
    "inout": (True, False),
}
USERS = {
    # id: (card, phone, pin, doors, enabled, role, remote_unlock)
    "full": ("1", "full-phone", "1111", "all", True, "user", True),
    "noremote": ("2", "noremote-phone", "2222", "all", True, "user", False),
    "nopin": ("3", "nopin-phone", None, "all", True, "user", True),
    "elsewhere": ("4", "elsewhere-phone", "4444", "[other]", True, "user", True),
    "disabled": ("5", "disabled-phone", "5555", "all", False, "user", True),
    "admin": ("6", "admin-phone", "6666", "all", True, "site_admin", False),
}
FACTORS = ["card", "nfc", "ble_near", "ble_far", "nearby", "not_nearby", "remote"]


def site_yaml(state: str) -> str:
    schedule = "" if state in ("access_controlled", "lockdown") else (
        f'    schedule: [{{days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", '
        f'end: "24:00", state: {state}}}]\n')
    doors = "".join(
        f"  - id: {d}\n    reader: true\n    keypad: true\n    in_out: {str(io).lower()}\n"
        f"    strict_two_factor: {str(st).lower()}\n    ble_rssi_min: -60\n{schedule}"
        for d, (io, st) in DOORS.items()
    ) + "  - {id: other, reader: true}\n"
    users = "".join(
        f"  - id: {u}\n    cards: [\"{c}\"]\n    phones: [{p}]\n"
        + (f'    pin: "{pin}"\n' if pin else "")
        + f"    doors: {doors_}\n    enabled: {str(en).lower()}\n    role: {role}\n"
        f"    remote_unlock: {str(ru).lower()}\n"
        for u, (c, p, pin, doors_, en, role, ru) in USERS.items()
    )
    return f"site: {{id: hq, timezone: UTC}}\ndoors:\n{doors}users:\n{users}"


def expected(state: str, door: str, side: Side, factor: str, user: str | None) -> Reason:
    """docs/decisions.md, 'Order of checks in a decision', for these inputs."""
    in_out, strict = DOORS[door]
    if side is Side.OUT and not in_out:
        return Reason.NO_SUCH_DEVICE
    spec = USERS.get(user) if user else None
    if state in ("locked", "lockdown"):
        if factor == "remote" and spec and spec[5] == "site_admin" and spec[4]:
            return Reason.ACCESS_GRANTED
        return Reason.LOCKDOWN if state == "lockdown" else Reason.DOOR_LOCKED
    if state == "unlocked":
        return Reason.DOOR_UNLOCKED
    if spec is None:
        return Reason.UNKNOWN_CREDENTIAL
    _, _, pin, doors, enabled, role, remote_ok = spec
    if not enabled or doors != "all":
        return Reason.NO_ACCESS
    if factor == "remote" and not (remote_ok or role == "site_admin"):
        return Reason.REMOTE_NOT_PERMITTED
    if factor == "not_nearby":
        return Reason.NOT_NEARBY
    entering_two_factor = state == "two_factor" and side is Side.IN
    if factor.startswith("ble"):
        if entering_two_factor:
            return Reason.BLE_NOT_ALLOWED
        if factor == "ble_far":
            return Reason.TOO_FAR
    if not entering_two_factor:
        return Reason.ACCESS_GRANTED
    if factor in ("card", "nfc"):
        return Reason.PIN_REQUIRED if pin else Reason.PROFILE_INCOMPLETE
    if strict:
        return Reason.BYPASS_DISABLED
    if not pin:
        return Reason.PROFILE_INCOMPLETE
    return Reason.BYPASS_NEARBY if factor == "nearby" else Reason.BYPASS_REMOTE


def present(h: Harness, door: str, side: Side, factor: str, user: str | None) -> Reason:
    if factor == "card":
        return h.card(door, USERS[user][0] if user else "999", side).reason
    phone = f"{user}-phone" if user else "stranger-phone"
    kinds = {
        "nfc": (Factor.NFC, {}),
        "ble_near": (Factor.BLE, {"rssi": -60}),
        "ble_far": (Factor.BLE, {"rssi": -61}),
        "nearby": (Factor.NEARBY, {"rssi": -80, "age": 10}),
        "not_nearby": (Factor.NEARBY, {"rssi": -81, "age": 1}),
        "remote": (Factor.REMOTE, {}),
    }
    kind, evidence = kinds[factor]
    credential = "backend:test" if kind is Factor.REMOTE else phone
    return h.mobile(kind, door, user or "stranger", credential, side, evidence).reason


@pytest.mark.parametrize("state", STATES)
def test_every_combination(state: str) -> None:
    h = Harness(site_yaml(state), datetime(2026, 11, 30, 9, 0))
    if state == "lockdown":
        h.core.set_lockdown(True)
    combos = itertools.product(DOORS, [Side.IN, Side.OUT], FACTORS, [*USERS, None])
    mismatches = []
    for door, side, factor, user in combos:
        got = present(h, door, side, factor, user)
        want = expected(state, door, side, factor, user)
        if got is not want:
            mismatches.append((door, side.value, factor, user, got.value, want.value))
        h.after(1)  # replayed tokens are not what this test is about
    assert mismatches == [], mismatches[:10]
