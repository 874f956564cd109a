"""Each contract number in passbridge/core/policy.py is the number the
contract's own sentence gives (shared/spec), and the parts that enforce it
read it from there rather than spell it again."""

from __future__ import annotations

import re

import pytest

from passbridge.core import policy
from tests.conftest import PROJECT, SHARED

SPEC = SHARED / "spec"
PACKAGE = PROJECT / "passbridge"


def _spec(name: str) -> str:
    return " ".join((SPEC / name).read_text(encoding="utf-8").split())


@pytest.mark.parametrize(("document", "sentence"), [
    ("rules.md", f"Lockout: {policy.WRONG_PINS_BEFORE_LOCKOUT} wrong PINs in a row"),
    ("rules.md", f"two-factor entry there for {policy.FIRST_LOCKOUT_SECONDS:.0f} s"),
    ("rules.md", f"doubles the time, up to {policy.LONGEST_LOCKOUT_SECONDS / 60:.0f} min"),
    ("rules.md", f"{policy.WRONG_PINS_BEFORE_LOCKOUT} wrong codes in a row on one keypad"),
    ("rules.md", f"PIN-only entry for {policy.FIRST_LOCKOUT_SECONDS:.0f} s, doubling on each "
                 f"further lockout up to {policy.LONGEST_LOCKOUT_SECONDS / 60:.0f} min"),
    ("rules.md", f"(default {policy.PIN_TIMEOUT_DEFAULT} s, configurable "
                 f"{policy.PIN_TIMEOUT_RANGE[0]}-{policy.PIN_TIMEOUT_RANGE[1]} s)"),
    ("scenarios.md", f"unlock_seconds: {policy.UNLOCK_SECONDS_DEFAULT} # "
                     f"{policy.UNLOCK_SECONDS_RANGE[0]}-{policy.UNLOCK_SECONDS_RANGE[1]}"),
    ("scenarios.md", f"pin_timeout: {policy.PIN_TIMEOUT_DEFAULT} # seconds, "
                     f"{policy.PIN_TIMEOUT_RANGE[0]}-{policy.PIN_TIMEOUT_RANGE[1]}"),
    ("scenarios.md", f"ble_rssi_min: {policy.BLE_RSSI_MIN_DEFAULT} #"),
    ("scenarios.md", f"entry code, {policy.PIN_DIGITS[0]}-{policy.PIN_DIGITS[1]} digits"),
    ("scenarios.md", f"are 1-{policy.ID_MAX_CHARS} characters"),
    ("interfaces.md", f"`exp` (at most {policy.FACTOR_MAX_LIFETIME:.0f} s after `iat`; "
                      f"default {policy.FACTOR_DEFAULT_LIFETIME:.0f} s)"),
    ("interfaces.md", f"plus clock skew, {policy.DEFAULT_LEEWAY:.0f} s by default"),
    ("interfaces.md", f"`exp` (<= {policy.BACKEND_MAX_LIFETIME:.0f} s)"),
    ("interfaces.md", f"RSSI at or above {policy.NEARBY_RSSI_MIN} dBm within the last "
                      f"{policy.NEARBY_WINDOW_SECONDS:.0f} s"),
])
def test_policy_numbers_are_the_contracts(document: str, sentence: str) -> None:
    assert sentence in _spec(document)


# Where a contract number used to be spelled out beside the code that
# enforces it; each now imports it from core/policy.py.
SPELLED = [
    re.compile(r"^\s*(WRONG_PINS_BEFORE_LOCKOUT|FIRST_LOCKOUT_SECONDS|LONGEST_LOCKOUT_SECONDS"
               r"|NEARBY_(?:RSSI|MIN|MAX|WINDOW)\w*|ID_MAX_CHARS|OVERRIDE_\w+|\w*_RANGE"
               r"|(?:FACTOR|BACKEND|NEARBY)_MAX_LIFETIME|FACTOR_DEFAULT_LIFETIME|DEFAULT_LEEWAY"
               r"|M(?:IN|AX)_JTI_CHARS|MAX_CLAIM_CHARS|MAX_TOKEN_BYTES)"
               r"\s*(:[^=]+)?=", re.MULTILINE),
    re.compile(r"\{4,16\}|\b(unlock_seconds|pin_timeout|ble_rssi_min)\b[^\n=]*=\s*-?\d"),
]


def test_contract_numbers_are_spelled_only_in_policy() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() == "core/policy.py":
            continue
        text = path.read_text(encoding="utf-8")
        for pattern in SPELLED:
            found += [f"{path.relative_to(PACKAGE)}: {m.group(0).strip()}"
                      for m in pattern.finditer(text)]
    assert not found
