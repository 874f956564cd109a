"""Every number of the Bluetooth unlock path in one place, with its default.

``BleUnlockClient`` (one GATT session) and the approach loop of a door radio
(which phones to try, how many at once, who waits) read these. The defaults
are what ``passbridge serve --ble`` runs with; protocols/ble/README.md
("Timeouts and errors") publishes the phone-facing ones, and README.md's
operations section says what an operator sees when rogue devices are in view.

Why the numbers are small: anybody can advertise the passbridge service, so
every step a peripheral could stall is bounded by a short per-step timeout,
and a device that never completes is tried less and less often (back-off).
A real phone completes the whole STANDARD authentication in well under a
second, so these bounds only ever cut short devices that were not going to
answer.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from passbridge.protocol.ble_framing import DEFAULT_MAX_MESSAGE


@dataclass(frozen=True, slots=True)
class BleSettings:
    """Bluetooth unlock timeouts, concurrency and back-off (seconds unless named)."""

    # --- one GATT session (BleUnlockClient) --------------------------------
    #: Link set-up and service discovery, one step (bleak does both in one
    #: call). A device that has not completed them by then is given up on, and
    #: this step is not retried inside the session: the back-off decides when
    #: it is tried again.
    connect_timeout: float = 1.5
    #: Enabling notifications on the response characteristic (a CCCD write).
    subscribe_timeout: float = 1.0
    #: One command: its first chunk written to the whole framed answer received.
    message_timeout: float = 1.0
    #: One connection, connect to disconnect.
    attempt_timeout: float = 4.0
    #: Every attempt of one session together.
    session_timeout: float = 8.0
    #: Waiting for a disconnect to complete (it is always asked for).
    disconnect_timeout: float = 2.0
    #: Connections per session; a new one only after a quick connect error, a
    #: dropped link or a command timeout, never after a connect step timeout, a
    #: framing or authentication failure, or a recorded decision.
    attempts: int = 2
    #: A phone that unlocked is not unlocked again for this long (one approach
    #: is one unlock), keyed by credential and by rotating id.
    cooldown_seconds: float = 30.0
    #: Longest framed message accepted from a phone, in bytes.
    max_message: int = DEFAULT_MAX_MESSAGE

    # --- the approach loop of one door radio ---------------------------------
    #: How often the loop looks at the proximity table for phones to try.
    poll_interval: float = 0.25
    #: Sessions running at once on one radio. Link set-up itself is one at a
    #: time (a controller has a single pending LE connection); the rest of the
    #: session (subscription, commands, the decision) runs in parallel.
    max_parallel: int = 4
    #: Of those, sessions with a device that already failed to complete once
    #: (a suspect). Fresh devices always have the other slots, and take the
    #: radio before suspects, so a known-bad device delays a new phone by at
    #: most one connect step.
    max_parallel_suspects: int = 1
    #: After a decision about an authenticated phone that was not a grant, the
    #: same advertisement is not tried again for this long (the audit log
    #: records attempts, not polls).
    retry_after_decision: float = 10.0
    #: First back-off after a session that did not complete (no authenticated
    #: phone): the device is skipped for this long ...
    backoff_initial: float = 2.0
    #: ... multiplied by this after each further failure ...
    backoff_factor: float = 2.0
    #: ... up to this much.
    backoff_max: float = 60.0
    #: A device's failures are forgotten this long after its last one.
    backoff_forget: float = 600.0
    #: Addresses and rotating ids remembered by the back-off at most (oldest
    #: forgotten first), so a flood of fake devices costs bounded memory.
    backoff_capacity: int = 4096

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "cooldown_seconds":
                if value < 0:
                    raise ValueError("BleSettings.cooldown_seconds must not be negative")
            elif value <= 0:
                raise ValueError(f"BleSettings.{field.name} must be positive, not {value!r}")
        if self.attempts < 1 or self.max_parallel < 1 or self.max_parallel_suspects < 1:
            raise ValueError("BleSettings: attempts and parallel limits must be at least 1")
        if self.max_parallel_suspects > self.max_parallel:
            raise ValueError("BleSettings.max_parallel_suspects must not exceed max_parallel")
        if self.backoff_factor < 1:
            raise ValueError("BleSettings.backoff_factor must be at least 1")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("BleSettings.backoff_max must be at least backoff_initial")


DEFAULT_BLE_SETTINGS = BleSettings()
