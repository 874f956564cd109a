"""Plain-language words for every decision reason, state and factor: the one
table the console shows people (served to the browser as a JS module made
from this table, so the browser never keeps a second copy to drift).

Keyed by the core's enums: a reason added to ``core.model.Reason`` without
words here fails ``tests/service/test_console.py``.
"""

from __future__ import annotations

from passbridge.core.model import DoorState, Factor, Reason, Result

REASON_TEXT: dict[Reason, str] = {
    Reason.ACCESS_GRANTED: "Access granted",
    Reason.TWO_FACTOR_COMPLETE: "Card and entry code accepted",
    Reason.BYPASS_NEARBY: "Opened from the phone nearby",
    Reason.BYPASS_REMOTE: "Opened remotely",
    Reason.DOOR_UNLOCKED: "Door is unlocked",
    Reason.PIN_REQUIRED: "Entry code needed",
    Reason.UNKNOWN_CREDENTIAL: "Card or phone not known",
    Reason.NO_ACCESS: "No access to this door",
    Reason.DOOR_LOCKED: "Door is locked",
    Reason.LOCKDOWN: "Lockdown in force",
    Reason.PIN_INCORRECT: "Wrong entry code",
    Reason.PIN_WITHOUT_CARD: "Entry code without a card first",
    Reason.PIN_TIMEOUT: "Entry code came too late",
    # The console adds how long ("Locked out for 2 minutes") from the decision's detail.
    Reason.LOCKED_OUT: "Locked out",
    Reason.BLE_NOT_ALLOWED: "Bluetooth cannot open this door now",
    Reason.BYPASS_DISABLED: "This door needs card and code",
    Reason.PROFILE_INCOMPLETE: "User has no entry code set",
    Reason.REMOTE_NOT_PERMITTED: "Remote unlock not allowed for this user",
    Reason.NOT_NEARBY: "Phone not seen near the door",
    Reason.TOO_FAR: "Phone too far from the door",
    Reason.NO_SUCH_DEVICE: "This door has no such reader or keypad",
    Reason.TOKEN_INVALID: "Credential did not verify",
    Reason.TOKEN_EXPIRED: "Credential expired",
    Reason.TOKEN_REPLAYED: "Credential already used",
    Reason.INTERNAL_ERROR: "Internal error (see the service log)",
}

RESULT_TEXT: dict[Result, str] = {
    Result.GRANTED: "Granted",
    Result.DENIED: "Denied",
    Result.PENDING: "Waiting",
}

STATE_TEXT: dict[DoorState, str] = {
    DoorState.ACCESS_CONTROLLED: "Card opens",
    DoorState.TWO_FACTOR: "Card and code",
    DoorState.UNLOCKED: "Unlocked",
    DoorState.LOCKED: "Locked",
}

FACTOR_TEXT: dict[Factor, str] = {
    Factor.CARD: "badge",
    Factor.NFC: "phone tap (NFC)",
    Factor.PIN: "entry code",
    Factor.BLE: "Bluetooth",
    Factor.NEARBY: "Nearby",
    Factor.REMOTE: "remote",
}


def words() -> dict[str, dict[str, str]]:
    """The tables by their wire values, as the browser gets them."""
    return {
        "reasons": {r.value: text for r, text in REASON_TEXT.items()},
        "results": {r.value: text for r, text in RESULT_TEXT.items()},
        "states": {s.value: text for s, text in STATE_TEXT.items()},
        "factors": {f.value: text for f, text in FACTOR_TEXT.items()},
    }
