"""One NFC tap, reader side: the Aliro transaction, then the door's answer.

The handler runs in the nfcpy reader thread (adapters.nfc_reader) and asks
the event loop for the decision mid-tap, because the phone waits in the
field for the door status. A tap that fails authentication is still a
decision (denied, audited): an operator sees unknown phones at the door.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from passbridge.adapters.nfc_reader import Decide, Exchange, TapOutcome
from passbridge.bridge.flood import FloodGate
from passbridge.bridge.reader_driver import (
    CredentialDirectory,
    new_transaction,
    reader_steps,
    run_reader,
)
from passbridge.controller import DoorController
from passbridge.core.decision import ENUM_TEXT, Decision
from passbridge.core.model import Factor, Reason, Side
from passbridge.protocol.aliro_crypto import Interface
from passbridge.protocol.aliro_reader import Authenticated, Failed, ReaderIdentity
from passbridge.protocol.exchange_status import ReaderStatus, exchange_status

log = logging.getLogger(__name__)

# How the decision record names the flow a tap used (the token's ``ev.flow``).
FLOW_EVIDENCE = {"standard": "STANDARD", "fast": "FAST"}


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
    reader_status: int | None = None  # what EXCHANGE told the phone (None: no EXCHANGE)
    phone_refusal: int | None = None  # the status word of a phone that refused EXCHANGE

    @property
    def decision(self) -> Decision | None:
        return self.request.decision


class ExchangeRefusals(Protocol):
    """Where refused door statuses are counted (service.metrics.Metrics)."""

    def nfc_exchange_refused(self, door: str, status: int, status_word: int) -> None: ...


def report_exchange(result: TapResult | None, door: str, side: Side,
                    counter: ExchangeRefusals | None = None) -> None:
    """Log (and count) a phone that refused the door status.

    Such a phone showed its owner nothing: on a refusal it is as if the
    reader had stayed silent. The decision itself is audited either way.
    """
    if result is None or result.phone_refusal is None:
        return
    status = result.reader_status if result.reader_status is not None else -1
    decision = result.decision
    log.warning(
        "NFC tap at door %s/%s: the phone refused the door status %04X with status word "
        "%04X (decision %s)", door, side.value, status, result.phone_refusal,
        decision.id if decision is not None else "none")
    if counter is not None:
        counter.nfc_exchange_refused(door, status, result.phone_refusal)


def tap_reader_status(request: TapRequest, granted: bool) -> ReaderStatus:
    """The EXCHANGE value for what ``decide`` answered (the table in exchange_status).

    Without a decision that agrees with the answer (the decision did not
    arrive in time) the door stays shut, and the phone is told it was the
    reader's fault.
    """
    decision = request.decision
    if decision is not None and decision.granted is granted:
        return exchange_status(ENUM_TEXT[decision.result], ENUM_TEXT[decision.reason])
    if granted:
        return exchange_status("granted", "access_granted")
    return exchange_status("denied", "internal_error")


class AliroTapHandler:
    """A TapHandler running one reader transaction (a fresh handler per tap)."""

    def __init__(
        self,
        identity: ReaderIdentity,
        credentials: CredentialDirectory,
        *,
        interface: Interface = Interface.NFC,
        on_authenticated: Callable[[str], None] | None = None,
    ) -> None:
        """``on_authenticated`` hears each credential that proved itself (a
        FastKeyOrder puts its key first for the next tap)."""
        self._identity = identity
        self._credentials = credentials
        self._interface = interface
        self._on_authenticated = on_authenticated

    def run(self, exchange: Exchange, decide: Decide) -> TapResult:
        txn = new_transaction(self._identity, interface=self._interface)
        asked: list[tuple[TapRequest, bool]] = []

        def report(event: Authenticated | Failed) -> int | None:
            """A failed authentication is decided (denied, audited) before the
            closing CONTROL FLOW; an authenticated phone waits for its status."""
            if isinstance(event, Failed):
                request = TapRequest(transaction_id=txn.transaction_id,
                                     failure=f"{event.reason}: {event.detail}")
                decide(request)
                asked.append((request, False))
                return None
            if self._on_authenticated is not None:
                self._on_authenticated(event.credential_id)
            request = TapRequest(credential_id=event.credential_id, flow=event.flow,
                                 transaction_id=event.transaction_id)
            granted = decide(request)
            asked.append((request, granted))
            return int(tap_reader_status(request, granted))

        outcome = run_reader(reader_steps(txn, self._credentials), exchange, report)
        request, granted = asked[-1]
        if outcome.authenticated is None:
            return TapResult(request, granted=False, status_delivered=False)
        return TapResult(request, granted, status_delivered=outcome.finished,
                         reader_status=outcome.status, phone_refusal=outcome.refusal)


AUTH_FAILED = "nfc_auth_failed"
"""The FloodGate kind for unauthenticated NFC denials."""


class NfcDoorDecider:
    """The event-loop side of a tap at one door side: token, core, audit.

    ``gate`` (production readers) limits what unauthenticated taps write:
    the first denial of a burst is audited, the rest are counted for the
    gate's summaries. A phone that authenticated is always decided.
    """

    def __init__(self, controller: DoorController, door: str, side: Side = Side.IN,
                 *, gate: FloodGate | None = None) -> None:
        self._controller = controller
        self.door = door
        self.side = side
        self.gate = gate
        self.last: Decision | None = None

    async def __call__(self, request: object) -> bool:
        if not isinstance(request, TapRequest):
            return False
        controller = self._controller
        if request.credential_id is None:
            request.decision = await self._unauthenticated(
                f"NFC authentication failed ({request.failure})", request.failure or "")
            return False
        user = controller.core.site.user_by_phone.get(request.credential_id)
        if user is None:
            request.decision = self.last = await controller.bridge_failure(
                self.door,
                self.side,
                Factor.NFC,
                Reason.UNKNOWN_CREDENTIAL,
                "phone is enrolled but no user on this site has it",
                credential=request.credential_id,
            )
            return False
        request.decision = self.last = await controller.mobile_factor(
            user=user,
            door=self.door,
            side=self.side,
            factor=Factor.NFC,
            credential=request.credential_id,
            evidence={"txn": request.transaction_id.hex(),
                      "flow": FLOW_EVIDENCE.get(request.flow or "", request.flow)},
        )
        return request.decision.granted

    async def tap_ended(self, outcome: TapOutcome[TapResult]) -> Decision | None:
        """What a finished tap came to; audits one that ended before a decision.

        None: nothing decided this time (a denial summarised by the gate).
        """
        if outcome.result is not None and outcome.result.decision is not None:
            return outcome.result.decision
        if outcome.decided:
            return self.last  # decided, then the link broke (the phone left)
        detail = f"NFC tap failed: {outcome.error}" if outcome.error else "NFC tap failed"
        error_kind = type(outcome.error).__name__ if outcome.error else "unknown"
        return await self._unauthenticated(detail, error_kind)

    async def _unauthenticated(self, detail: str, why: str) -> Decision | None:
        """An audited denial, or (within a hostile burst) one more count for the summary."""
        if self.gate is not None and not self.gate.admit(AUTH_FAILED, why.partition(":")[0]):
            return None
        self.last = await self._controller.bridge_failure(
            self.door, self.side, Factor.NFC, Reason.UNKNOWN_CREDENTIAL, detail)
        return self.last
