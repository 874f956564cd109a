"""One NFC tap, reader side: the Aliro transaction, then the door's answer.

The handler runs in the nfcpy reader thread (adapters.nfc_reader) and asks
the event loop for the decision mid-tap, because the phone waits in the
field for the door status. A tap that fails authentication is still a
decision (denied, audited): an operator sees unknown phones at the door.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from passbridge.adapters.nfc_reader import Decide, Exchange
from passbridge.controller import DoorController
from passbridge.core.decision import Decision
from passbridge.core.model import Factor, Reason, Side
from passbridge.protocol.aliro_crypto import Interface
from passbridge.protocol.aliro_reader import (
    Authenticated,
    CredentialDirectory,
    Failed,
    Finished,
    ReaderIdentity,
    ReaderTransaction,
    SendCommand,
)

log = logging.getLogger(__name__)

# A STANDARD tap is 4 round trips; anything past this is a phone stalling us.
MAX_COMMANDS_PER_TAP = 8


@dataclass
class TapRequest:
    """What the reader thread asks the event loop to decide on.

    Exactly one of ``credential_id`` (authenticated phone) or ``failure``
    (why authentication did not complete) is set. The loop fills in
    ``decision`` so the thread can report it.
    """

    credential_id: str | None = None
    flow: str | None = None
    transaction_id: bytes = b""
    failure: str | None = None
    decision: Decision | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TapResult:
    request: TapRequest
    granted: bool
    status_delivered: bool  # the phone acknowledged the door status

    @property
    def decision(self) -> Decision | None:
        return self.request.decision


class AliroTapHandler:
    """A TapHandler running one ReaderTransaction (a fresh handler per tap)."""

    def __init__(
        self,
        identity: ReaderIdentity,
        credentials: CredentialDirectory,
        *,
        interface: Interface = Interface.NFC,
    ) -> None:
        self._identity = identity
        self._credentials = credentials
        self._interface = interface

    def run(self, exchange: Exchange, decide: Decide) -> TapResult:
        txn = ReaderTransaction(self._identity, self._credentials, interface=self._interface)
        command = txn.start()
        for _ in range(MAX_COMMANDS_PER_TAP):
            event = txn.receive(exchange(command))
            if isinstance(event, SendCommand):
                command = event.apdu
                continue
            if isinstance(event, Failed):
                request = TapRequest(
                    transaction_id=txn.transaction_id, failure=f"{event.reason}: {event.detail}"
                )
                decide(request)
                _send_quietly(exchange, txn.control_flow(success=False))
                return TapResult(request, granted=False, status_delivered=False)
            if isinstance(event, Authenticated):
                request = TapRequest(
                    credential_id=event.credential_id,
                    flow=event.flow,
                    transaction_id=event.transaction_id,
                )
                granted = decide(request)
                final = txn.receive(exchange(txn.door_status(granted)))
                return TapResult(request, granted, status_delivered=isinstance(final, Finished))
            break
        request = TapRequest(
            transaction_id=txn.transaction_id, failure="out_of_order: tap did not finish"
        )
        decide(request)
        return TapResult(request, granted=False, status_delivered=False)


def _send_quietly(exchange: Exchange, command: bytes) -> None:
    """Tell the phone the tap is over; it may already have left the field."""
    try:
        exchange(command)
    except Exception:  # noqa: BLE001 - the decision is made; this is courtesy
        log.debug("phone did not take the closing command", exc_info=True)


class NfcDoorDecider:
    """The event-loop side of a tap at one door side: token, core, audit."""

    def __init__(self, controller: DoorController, door: str, side: Side = Side.IN) -> None:
        self._controller = controller
        self.door = door
        self.side = side

    async def __call__(self, request: object) -> bool:
        if not isinstance(request, TapRequest):
            return False
        controller = self._controller
        if request.credential_id is None:
            request.decision = await controller.bridge_failure(
                self.door,
                self.side,
                Factor.NFC,
                Reason.UNKNOWN_CREDENTIAL,
                f"NFC authentication failed ({request.failure})",
            )
            return False
        user = controller.core.site.user_by_phone.get(request.credential_id)
        if user is None:
            request.decision = await controller.bridge_failure(
                self.door,
                self.side,
                Factor.NFC,
                Reason.UNKNOWN_CREDENTIAL,
                "phone is enrolled but no user on this site has it",
                credential=request.credential_id,
            )
            return False
        request.decision = await controller.mobile_factor(
            user=user,
            door=self.door,
            side=self.side,
            factor=Factor.NFC,
            credential=request.credential_id,
            evidence={"txn": request.transaction_id.hex(), "flow": request.flow},
        )
        return request.decision.granted
