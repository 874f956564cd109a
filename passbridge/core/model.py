"""The domain model: a site, its doors, schedules, exceptions, users and trust.

Everything here is immutable data built once by the site loader; the runtime
state that changes between decisions (pending cards, lockouts, overrides,
lockdown) lives in ``core.engine``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from datetime import date as Date  # the field ``DoorException.date`` shadows ``date``
from enum import StrEnum
from zoneinfo import ZoneInfo

from passbridge.core.policy import (
    BLE_RSSI_MIN_DEFAULT,
    PIN_TIMEOUT_DEFAULT,
    UNLOCK_SECONDS_DEFAULT,
)


class DoorState(StrEnum):
    ACCESS_CONTROLLED = "access_controlled"
    TWO_FACTOR = "two_factor"
    UNLOCKED = "unlocked"
    LOCKED = "locked"


class Factor(StrEnum):
    CARD = "card"
    NFC = "nfc"
    PIN = "pin"
    BLE = "ble"
    NEARBY = "nearby"
    REMOTE = "remote"


# Factors that stand in for the card on a two-factor door.
CARD_EQUIVALENT: frozenset[Factor] = frozenset({Factor.CARD, Factor.NFC})
# Factors that only ever reach the core as a signed token from a bridge.
MOBILE_FACTORS: frozenset[Factor] = frozenset(
    {Factor.NFC, Factor.BLE, Factor.NEARBY, Factor.REMOTE}
)
# Factors a bridge key may vouch for when its trust entry names none
# (interfaces.md: ``remote`` and ``nearby`` only when listed).
BRIDGE_DEFAULT_FACTORS: frozenset[Factor] = frozenset({Factor.NFC, Factor.BLE, Factor.CARD})


class Side(StrEnum):
    IN = "in"
    OUT = "out"


class Result(StrEnum):
    GRANTED = "granted"
    DENIED = "denied"
    PENDING = "pending"


class Reason(StrEnum):
    ACCESS_GRANTED = "access_granted"
    TWO_FACTOR_COMPLETE = "two_factor_complete"
    BYPASS_NEARBY = "bypass_nearby"
    BYPASS_REMOTE = "bypass_remote"
    DOOR_UNLOCKED = "door_unlocked"
    PIN_REQUIRED = "pin_required"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    NO_ACCESS = "no_access"
    DOOR_LOCKED = "door_locked"
    LOCKDOWN = "lockdown"
    PIN_INCORRECT = "pin_incorrect"
    PIN_WITHOUT_CARD = "pin_without_card"
    PIN_TIMEOUT = "pin_timeout"
    LOCKED_OUT = "locked_out"
    BLE_NOT_ALLOWED = "ble_not_allowed"
    BYPASS_DISABLED = "bypass_disabled"
    PROFILE_INCOMPLETE = "profile_incomplete"
    REMOTE_NOT_PERMITTED = "remote_not_permitted"
    NOT_NEARBY = "not_nearby"
    TOO_FAR = "too_far"
    NO_SUCH_DEVICE = "no_such_device"
    TOKEN_INVALID = "token_invalid"  # noqa: S105 - a reason code, not a secret
    TOKEN_EXPIRED = "token_expired"  # noqa: S105
    TOKEN_REPLAYED = "token_replayed"  # noqa: S105
    INTERNAL_ERROR = "internal_error"

    @property
    def result(self) -> Result:
        return REASON_RESULT[self]


REASON_RESULT: dict[Reason, Result] = {
    reason: (
        Result.GRANTED
        if reason
        in {
            Reason.ACCESS_GRANTED,
            Reason.TWO_FACTOR_COMPLETE,
            Reason.BYPASS_NEARBY,
            Reason.BYPASS_REMOTE,
            Reason.DOOR_UNLOCKED,
        }
        else Result.PENDING
        if reason is Reason.PIN_REQUIRED
        else Result.DENIED
    )
    for reason in Reason
}


class Repeat(StrEnum):
    NONE = "none"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    YEARLY = "yearly"


class Role(StrEnum):
    USER = "user"
    SITE_ADMIN = "site_admin"


WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True, slots=True)
class ScheduleWindow:
    """A weekly wall-clock window ``[start, end)`` in minutes after midnight.

    ``end <= start`` runs past midnight; the part after midnight belongs to
    the start day. ``days`` are ISO weekday indexes, 0 = Monday.
    """

    name: str  # what a decision reports as ``schedule:<name>``
    days: frozenset[int]
    start: int
    end: int
    state: DoorState

    @property
    def overnight(self) -> bool:
        return self.end <= self.start


@dataclass(frozen=True, slots=True)
class DoorException:
    """A dated window that overrides the schedule, optionally repeating."""

    id: str
    date: date
    start: int
    end: int
    state: DoorState
    repeat: Repeat = Repeat.NONE
    until: Date | None = None

    @property
    def overnight(self) -> bool:
        return self.end <= self.start


@dataclass(frozen=True, slots=True)
class Door:
    id: str
    name: str = ""
    reader: bool = True
    keypad: bool = False
    in_out: bool = False
    unlock_seconds: int = UNLOCK_SECONDS_DEFAULT
    pin_timeout: int = PIN_TIMEOUT_DEFAULT
    ble_rssi_min: int = BLE_RSSI_MIN_DEFAULT
    strict_two_factor: bool = False
    schedule: tuple[ScheduleWindow, ...] = ()
    exceptions: tuple[DoorException, ...] = ()

    @property
    def supports_two_factor(self) -> bool:
        return self.reader and self.keypad


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str = ""
    role: Role = Role.USER
    cards: tuple[str, ...] = ()
    # Keyed hash of the entry code (never the code itself); see core.pin.
    pin_hash: bytes | None = None
    phones: tuple[str, ...] = ()
    all_doors: bool = False
    doors: frozenset[str] = frozenset()
    remote_unlock: bool = False
    enabled: bool = True

    def may_open(self, door_id: str) -> bool:
        return self.enabled and (self.all_doors or door_id in self.doors)

    @property
    def has_card_equivalent(self) -> bool:
        return bool(self.cards) or bool(self.phones)

    @property
    def is_site_admin(self) -> bool:
        return self.role is Role.SITE_ADMIN


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key the service accepts, with its algorithm pinned.

    For a bridge key, ``doors`` and ``factors`` are what its factor tokens
    may speak for (``doors`` None: every door). The narrow default is the
    safe one: a key trusted without saying more cannot mint a Remote or
    Nearby unlock. Backend keys ignore both.
    """

    id: str
    alg: str  # "ES256" or "EdDSA"
    public_key_pem: str
    doors: frozenset[str] | None = None
    factors: frozenset[Factor] = BRIDGE_DEFAULT_FACTORS


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    timezone: ZoneInfo
    doors: dict[str, Door]
    users: dict[str, User]
    bridges: tuple[TrustedKey, ...] = ()
    backends: tuple[TrustedKey, ...] = ()
    # Content hash of the configuration this site was loaded from.
    revision: str = ""
    # Indexes built by the loader so a decision never scans all users.
    user_by_card: dict[str, str] = field(default_factory=dict)
    user_by_phone: dict[str, str] = field(default_factory=dict)
    users_by_pin_hash: dict[bytes, tuple[str, ...]] = field(default_factory=dict)
