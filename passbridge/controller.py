"""The one path every factor takes: the core decides, the audit log commits,
then (and only then) the answer goes out.

The HTTP service, the NFC and BLE bridges, the scenario runner and ``sim``
all call this, so a scenario exercises exactly what production runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from passbridge.clock import Clock
from passbridge.core.decision import Decision, Presentation, ResolvedState
from passbridge.core.engine import DoorCore
from passbridge.core.model import DoorState, Factor, Reason, Side
from passbridge.core.tokens import VerifiedBackendRequest

log = logging.getLogger(__name__)


class AuditSink(Protocol):
    """Durable storage of decisions and changes (adapters.audit_sqlite)."""

    async def record(self, decision: Decision) -> int: ...

    async def record_change(self, kind: str, payload: Mapping[str, Any]) -> int: ...


class FactorMinter(Protocol):
    """The in-process bridge's signer (core.tokens.FactorTokenMinter)."""

    def mint(
        self,
        *,
        user: str,
        door: str,
        side: Side,
        factor: Factor,
        credential: str,
        evidence: dict[str, Any],
    ) -> str: ...


DecisionObserver = Callable[[Decision, float], None]


class DoorController:
    def __init__(
        self,
        core: DoorCore,
        audit: AuditSink,
        clock: Clock,
        *,
        minter: FactorMinter | None = None,
    ) -> None:
        self.core = core
        self.audit = audit
        self.clock = clock
        self.minter = minter
        self._observers: list[DecisionObserver] = []

    def observe(self, observer: DecisionObserver) -> None:
        """Called with each answered decision and its latency (metrics)."""
        self._observers.append(observer)

    def unobserve(self, observer: DecisionObserver) -> None:
        """Stop calling ``observer`` (a radio that stopped: wired reader feedback)."""
        if observer in self._observers:
            self._observers.remove(observer)

    # --- wired devices ---------------------------------------------------
    async def card(self, door: str, number: str, side: Side = Side.IN, *,
                   read: str | None = None) -> Decision:
        """``read``: how a wired reader read the card (bits, format, facility
        code; never the number), added to the decision's detail for the log."""
        started = time.perf_counter()
        presentation = Presentation(Factor.CARD, door, side, credential=number)
        decision = self.core.decide(presentation, self.clock.moment())
        if read:
            decision = replace(decision, detail=f"{decision.detail}; {read}"
                               if decision.detail else read)
        return await self._answer(decision, started)

    async def pin(self, door: str, code: str, side: Side = Side.IN) -> Decision:
        started = time.perf_counter()
        presentation = Presentation(Factor.PIN, door, side, secret=code)
        return await self._answer(self.core.decide(presentation, self.clock.moment()), started)

    # --- mobile factors ----------------------------------------------------
    async def token(self, token: str, *, door_hint: str | None = None) -> Decision:
        """A factor token from a bridge on another host (``POST /v1/factors``).

        Raises UnverifiedToken, before any decision or audit record, for a
        token no trusted key signed: unauthenticated input gets no durable
        write. A genuine token that fails later checks is an audited denial.
        """
        started = time.perf_counter()
        decision = self.core.decide_token(
            token, self.clock.moment(), door_hint=door_hint, decide_unverified=False
        )
        return await self._answer(decision, started)

    async def remote(self, request: VerifiedBackendRequest, door: str, side: Side) -> Decision:
        """A remote unlock: the backend's verified request goes to the core as it
        is (no factor token is minted for it; interfaces.md)."""
        started = time.perf_counter()
        decision = self.core.decide_remote(request, door, side, self.clock.moment())
        return await self._answer(decision, started)

    async def mobile_factor(
        self,
        *,
        user: str,
        door: str,
        side: Side,
        factor: Factor,
        credential: str,
        evidence: dict[str, Any],
    ) -> Decision:
        """The in-process bridge: sign what a radio path established, then
        hand the token to the core like any remote bridge would."""
        if self.minter is None:
            raise RuntimeError("this controller has no in-process bridge key")
        token = self.minter.mint(
            user=user,
            door=door,
            side=side,
            factor=factor,
            credential=credential,
            evidence=evidence,
        )
        started = time.perf_counter()
        decision = self.core.decide_token(token, self.clock.moment(), door_hint=door)
        return await self._answer(decision, started)

    async def bridge_failure(
        self,
        door: str,
        side: Side,
        factor: Factor,
        reason: Reason,
        detail: str,
        *,
        credential: str | None = None,
    ) -> Decision:
        started = time.perf_counter()
        decision = self.core.deny_unauthenticated(
            door, side, factor, reason, detail, self.clock.moment(), credential=credential
        )
        return await self._answer(decision, started)

    # --- admin changes -----------------------------------------------------
    async def set_override(
        self, door: str, state: DoorState | None, minutes: int | None, *, actor: str
    ) -> ResolvedState:
        resolved = self.core.set_override(door, state, minutes, self.clock.moment())
        await self.audit.record_change(
            "override",
            {
                "door": door,
                "state": state.value if state else None,
                "minutes": minutes,
                "actor": actor,
                "at": self.clock.now().isoformat(),
                "resolved_state": resolved.state.value,
                "resolved_source": resolved.source,
            },
        )
        return resolved

    async def set_lockdown(self, active: bool, *, door: str | None = None, actor: str) -> None:
        self.core.set_lockdown(active, door)
        await self.audit.record_change(
            "lockdown",
            {"active": active, "door": door, "actor": actor, "at": self.clock.now().isoformat()},
        )

    async def clear_lockout(self, door: str, user: str, *, actor: str) -> bool:
        """Lift a user's two-factor lockout at a door; the change is recorded
        naming who lifted it. False (and no record) when none was in force."""
        if not self.core.clear_lockout(door, user, self.clock.moment()):
            return False
        await self.audit.record_change(
            "lockout_cleared",
            {"door": door, "user": user, "actor": actor, "at": self.clock.now().isoformat()},
        )
        return True

    # --- the common tail ----------------------------------------------------
    async def _answer(self, decision: Decision, started: float) -> Decision:
        try:
            await self.audit.record(decision)
        except Exception:  # an unrecorded grant must not open a door
            log.exception("audit log unavailable; denying decision %s", decision.id)
            decision = replace(
                decision,
                result=Reason.INTERNAL_ERROR.result,
                reason=Reason.INTERNAL_ERROR,
                unlock_seconds=None,
                detail="audit log unavailable",
            )
        # Latency is a measurement of this machine, not domain time: real clock.
        latency = time.perf_counter() - started
        for observer in self._observers:
            observer(decision, latency)
        return decision
