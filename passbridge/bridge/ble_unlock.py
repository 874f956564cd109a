"""Bluetooth unlock at one door side: a phone seen nearby is connected to,
authenticated with the NFC flow under the BLE interface byte, and decided.

Bluetooth never counts as the card (rules.md): the core, not this module,
turns a Bluetooth unlock on a two-factor entry into ``ble_not_allowed``.
This module only reports what the radio established: who, and how strong.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from passbridge.adapters.ble_central import (
    BleLink,
    BleUnlockClient,
    BleUnlockError,
    Sighting,
)
from passbridge.bridge.reader_driver import (
    CredentialDirectory,
    new_transaction,
    reader_steps,
    run_reader_async,
)
from passbridge.controller import DoorController
from passbridge.core.decision import ENUM_TEXT, Decision
from passbridge.core.model import Factor, Reason, Side
from passbridge.protocol.aliro_crypto import Interface
from passbridge.protocol.aliro_reader import (
    Authenticated,
    Failed,
    ReaderIdentity,
    ReaderTransaction,
)
from passbridge.protocol.exchange_status import ReaderStatus, exchange_status

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BleAuthOutcome:
    """What one Bluetooth authentication came to."""

    authenticated: Authenticated | None
    granted: bool
    failure: Failed | None = None
    repeat: bool = False  # authenticated, but this phone unlocked moments ago
    finished: bool = False  # the phone acknowledged the door status


async def drive_reader(
    link: BleLink,
    transaction: ReaderTransaction,
    credentials: CredentialDirectory,
    decide: Callable[[Authenticated], Awaitable[tuple[bool, int]]],
) -> BleAuthOutcome:
    """Run one transaction (built with ``interface=Interface.BLE``) over ``link``
    with the bridge's reader driver.

    ``decide`` is asked only for a phone that authenticated and is not in its
    cooldown; it answers whether the door opened and the reader status that
    tells the phone (protocol.exchange_status). A phone in its cooldown is
    told "state unknown": accepted, and nothing new decided. A failed
    authentication is decided by the caller, from the outcome.
    """
    repeat = False
    granted = False

    async def report(event: Authenticated | Failed) -> int | None:
        nonlocal repeat, granted
        if isinstance(event, Failed):
            return None
        repeat = link.recently_unlocked(event.credential_id)
        if repeat:
            return int(ReaderStatus.STATE_UNKNOWN)
        granted, status = await _to_completion(_decide_and_claim(link, event, decide))
        return status

    outcome = await run_reader_async(reader_steps(transaction, credentials), link.exchange,
                                     report)
    return BleAuthOutcome(outcome.authenticated, granted, failure=outcome.failure,
                          repeat=repeat, finished=outcome.finished)


async def _decide_and_claim(
    link: BleLink,
    auth: Authenticated,
    decide: Callable[[Authenticated], Awaitable[tuple[bool, int]]],
) -> tuple[bool, int]:
    granted, status = await decide(auth)
    link.decided(auth.credential_id, granted)
    return granted, status


async def _to_completion(step: Awaitable[T]) -> T:
    """Await ``step`` to its end even if a timeout cancels the caller meanwhile.

    A decision, once asked for, is recorded and claimed (cooldown started)
    whatever happens to the session around it: cancelling it halfway would
    leave a grant in the audit log that the session does not know about, and
    the same phone could be granted again at once.
    """
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise


@dataclass(frozen=True, slots=True)
class BleAttempt:
    """What one approach came to: the decision recorded (None: none was),
    whether the device authenticated as an enrolled phone, and the session
    error when there was one."""

    decision: Decision | None
    authenticated: bool
    error: BleUnlockError | None = None


class BleDoorUnlocker:
    def __init__(
        self,
        controller: DoorController,
        client: BleUnlockClient,
        identity: ReaderIdentity,
        credentials: CredentialDirectory,
        door: str,
        side: Side = Side.IN,
    ) -> None:
        self._controller = controller
        self._client = client
        self._identity = identity
        self._credentials = credentials
        self.door = door
        self.side = side

    async def unlock(self, sighting: Sighting) -> Decision | None:
        """One Bluetooth unlock attempt; None when nothing could be decided
        (the link failed before the phone proved who it is)."""
        return (await self.attempt(sighting)).decision

    async def attempt(self, sighting: Sighting, *, priority: int = 0) -> BleAttempt:
        """One Bluetooth unlock attempt, and whether the device at the other
        end proved to be an enrolled phone (what the approach loop's back-off
        needs to know). ``priority`` orders the wait for the radio."""
        decisions: list[Decision] = []
        authenticated: list[str] = []

        async def decide(auth: Authenticated) -> tuple[bool, int]:
            authenticated.append(auth.credential_id)
            decision = await self._decide(auth, sighting)
            decisions.append(decision)
            status = exchange_status(ENUM_TEXT[decision.result], ENUM_TEXT[decision.reason])
            return decision.granted, int(status)

        def session(link: BleLink) -> Awaitable[BleAuthOutcome]:
            transaction = new_transaction(self._identity, interface=Interface.BLE)
            return drive_reader(link, transaction, self._credentials, decide)

        target = sighting.device if sighting.device is not None else sighting.address
        try:
            outcome = await self._client.run(
                target, session, adv_id=sighting.adv_id, priority=priority
            )
        except BleUnlockError as error:
            if decisions:
                return BleAttempt(decisions[-1], authenticated=True)
            if error.reason == "protocol":
                refused = await self._refuse(f"Bluetooth exchange failed: {error.detail}")
                return BleAttempt(refused, authenticated=False, error=error)
            return BleAttempt(None, authenticated=bool(authenticated), error=error)
        if decisions:
            return BleAttempt(decisions[-1], authenticated=True)
        if outcome.failure is not None:
            refused = await self._refuse(
                f"Bluetooth authentication failed ({outcome.failure.reason}: "
                f"{outcome.failure.detail})"
            )
            return BleAttempt(refused, authenticated=False)
        # A repeat inside the cooldown: already decided moments ago.
        return BleAttempt(None, authenticated=outcome.authenticated is not None)

    async def _decide(self, auth: Authenticated, sighting: Sighting) -> Decision:
        controller = self._controller
        user = controller.core.site.user_by_phone.get(auth.credential_id)
        if user is None:
            return await controller.bridge_failure(
                self.door,
                self.side,
                Factor.BLE,
                Reason.UNKNOWN_CREDENTIAL,
                "phone is enrolled but no user on this site has it",
                credential=auth.credential_id,
            )
        return await controller.mobile_factor(
            user=user,
            door=self.door,
            side=self.side,
            factor=Factor.BLE,
            credential=auth.credential_id,
            evidence={"rssi": sighting.rssi, "txn": auth.transaction_id.hex()},
        )

    async def _refuse(self, detail: str) -> Decision:
        return await self._controller.bridge_failure(
            self.door, self.side, Factor.BLE, Reason.UNKNOWN_CREDENTIAL, detail
        )
