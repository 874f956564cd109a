"""The reader status a door decision sends to the phone in EXCHANGE (tag 97).

A phone shows the person at the door what the reader says here, and a phone
that follows the public Aliro lists refuses (``67 01``, end of session) any
value that is not in them, so the person is told nothing at all. Every
decision therefore maps to a listed value, chosen by its result and reason:
refusals to the failure code that fits, grants and ``pending pin_required``
to success codes. protocols/nfc/README.md ("Reader status in EXCHANGE")
writes the table out with the reason for each choice.

The public lists (NXP's aliro-actuator reader status enumeration and kormax's
python-aliro-reader) split the two-byte value by its first byte: ``00xx``
failures, ``01xx`` success (the credential was accepted; the second byte is
the door's state). ``0000`` ("no information") and ``0027`` ("protocol
version not supported") appear only as CONTROL FLOW values, never in
EXCHANGE.

Sans-I/O and independent of the core: the table is keyed by the decision's
``result`` and ``reason`` as text, the values of rules.md's table.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType

__all__ = [
    "EXCHANGE_STATUS",
    "FAILURE_STATUSES",
    "PUBLIC_STATUSES",
    "SUCCESS_STATUSES",
    "ReaderStatus",
    "exchange_status",
    "is_success",
]


class ReaderStatus(IntEnum):
    """The values of the public Aliro reader status lists (EXCHANGE tag 97)."""

    # Failures: the transaction did not give access.
    CREDENTIAL_KEY_NOT_FOUND = 0x0001
    CREDENTIAL_KEY_EXPIRED = 0x0002
    CREDENTIAL_KEY_NOT_TRUSTED = 0x0003
    INVALID_SIGNATURE = 0x0004
    INVALID_DATA_FORMAT = 0x0006
    INVALID_DATA_CONTENT = 0x0007
    STATUS_WORD_ERROR = 0x0020
    NO_KEY_SLOT = 0x0021
    NO_PUBLIC_KEY = 0x0022
    NO_SIGNATURE = 0x0023
    INVALID_ACCESS_RIGHTS = 0x0025
    HARDWARE_ISSUE = 0x0026
    # Success: the credential was accepted; the low byte is the door's state.
    STATE_SECURED = 0x0100
    STATE_UNSECURED = 0x0101
    STATE_JAMMED = 0x0102
    ENTERING_SECURED = 0x0180
    ENTERING_UNSECURED = 0x0181
    STATE_UNKNOWN = 0x0182


FAILURE_STATUSES = frozenset(s for s in ReaderStatus if s >> 8 == 0x00)
SUCCESS_STATUSES = frozenset(s for s in ReaderStatus if s >> 8 == 0x01)
PUBLIC_STATUSES = FAILURE_STATUSES | SUCCESS_STATUSES


def is_success(status: int) -> bool:
    """A success-class value (first byte 01): the phone shows an accepted credential."""
    return status in SUCCESS_STATUSES


_S = ReaderStatus
_GRANTED = {
    # The door is open for the person: it is not secured any more.
    reason: _S.STATE_UNSECURED
    for reason in ("access_granted", "two_factor_complete", "bypass_nearby",
                   "bypass_remote", "door_unlocked")
}
_DENIED_RIGHTS = {
    # A refusal by the door's rules: the credential is valid, its rights do
    # not open this door now (schedule, lock, lockdown, lockout, profile, path).
    reason: _S.INVALID_ACCESS_RIGHTS
    for reason in ("no_access", "door_locked", "lockdown", "pin_incorrect",
                   "pin_without_card", "pin_timeout", "locked_out", "ble_not_allowed",
                   "bypass_disabled", "profile_incomplete", "remote_not_permitted",
                   "not_nearby", "too_far")
}
_DENIED_READER_SIDE = {
    # The fault is on the reader's side (its configuration, its own signed
    # statement, an internal error): nothing the phone or its owner can fix.
    reason: _S.HARDWARE_ISSUE
    for reason in ("no_such_device", "token_invalid", "token_expired", "token_replayed",
                   "internal_error")
}

EXCHANGE_STATUS: Mapping[tuple[str, str], ReaderStatus] = MappingProxyType({
    **{("granted", reason): status for reason, status in _GRANTED.items()},
    # The card step of a two-factor entry: accepted, but the door stays locked
    # until the entry code; the phone shows a locked door, not a refusal.
    ("pending", "pin_required"): _S.STATE_SECURED,
    # The phone authenticated, but its key is bound to no user of this site.
    ("denied", "unknown_credential"): _S.CREDENTIAL_KEY_NOT_FOUND,
    **{("denied", reason): status for reason, status in _DENIED_RIGHTS.items()},
    **{("denied", reason): status for reason, status in _DENIED_READER_SIDE.items()},
})
"""The one table: (decision result, decision reason) -> EXCHANGE reader status."""

# A decision the table does not know (a reason added to the core and not
# here; tests forbid it) still gets a listed value of its own class.
_BY_RESULT = MappingProxyType({
    "granted": _S.STATE_UNSECURED,
    "pending": _S.STATE_SECURED,
    "denied": _S.HARDWARE_ISSUE,
})


def exchange_status(result: str, reason: str) -> ReaderStatus:
    """The reader status for a decision with this ``result`` and ``reason``.

    Anything unknown, including an unknown result, is a failure: a door that
    did not open never tells the phone it did.
    """
    status = EXCHANGE_STATUS.get((result, reason))
    if status is not None:
        return status
    return _BY_RESULT.get(result, _S.HARDWARE_ISSUE)
