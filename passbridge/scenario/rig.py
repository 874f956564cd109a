"""Everything one scenario runs on: a manual clock, fresh keys, a real core,
a real SQLite audit log in a temporary folder, and the simulated radios.

Only the clock and the simulated devices know this is a scenario; each
action enters the production path at the device edge (see scenario.paths).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from passbridge.adapters.audit_sqlite import AuditLog
from passbridge.adapters.keystore import MemoryKeyStore
from passbridge.clock import ManualClock
from passbridge.controller import DoorController
from passbridge.core.decision import Decision
from passbridge.core.engine import DoorCore
from passbridge.core.model import DoorState, Reason, Result
from passbridge.core.tokens import FactorTokenMinter, FactorTokenVerifier
from passbridge.errors import ConfigError
from passbridge.scenario.model import Scenario, Step
from passbridge.scenario.paths import RadioPaths
from passbridge.sim.phone import SimulatedPhone


@dataclass(frozen=True, slots=True)
class StepOutcome:
    result: Result | None = None
    reason: Reason | None = None
    user: str | None = None
    state: DoorState | None = None
    state_source: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, decision: Decision) -> StepOutcome:
        return cls(decision.result, decision.reason, decision.user, decision.state,
                   decision.state_source)


class ScenarioRig:
    def __init__(
        self,
        scenario: Scenario,
        clock: ManualClock,
        keystore: MemoryKeyStore,
        audit: AuditLog,
        controller: DoorController,
        phones: dict[str, SimulatedPhone],
        folder: tempfile.TemporaryDirectory[str],
    ) -> None:
        self.scenario = scenario
        self.clock = clock
        self.keystore = keystore
        self.audit = audit
        self.controller = controller
        self.phones = phones
        self._folder = folder
        self.paths = RadioPaths(self)

    @classmethod
    async def start(cls, scenario: Scenario, *, pin_key: bytes, start: datetime) -> ScenarioRig:
        site = scenario.site
        clock = ManualClock(start)
        keystore = MemoryKeyStore(clock=clock)
        folder = tempfile.TemporaryDirectory(prefix="passbridge-scenario-")
        audit = AuditLog(Path(folder.name) / "audit.sqlite3", clock=clock)
        bridge = keystore.bridge_key()
        verifier = FactorTokenVerifier(site.id, [bridge.trusted()], clock=clock)
        minter = FactorTokenMinter(
            bridge.id, bridge.private_key, alg=bridge.alg, kid=bridge.id, site_id=site.id,
            clock=clock,
        )
        core = DoorCore(site, pin_key=pin_key, tokens=verifier)
        controller = DoorController(core, audit, clock, minter=minter)
        phones: dict[str, SimulatedPhone] = {}
        for phone_id, user_id in site.user_by_phone.items():
            phone = SimulatedPhone.create(phone_id)
            keystore.enroll_phone(phone_id, user_id, phone.public_key_point)
            phones[phone_id] = phone
        for phone_id in scenario.stranger_phones:
            phones[phone_id] = SimulatedPhone.create(phone_id)  # keys, but enrolled to nobody
        return cls(scenario, clock, keystore, audit, controller, phones, folder)

    async def perform(self, step: Step) -> StepOutcome:
        args, side = step.args, step.side
        try:
            if step.action == "card":
                return StepOutcome.of(await self.controller.card(args["door"], args["number"], side))
            if step.action == "pin":
                return StepOutcome.of(await self.controller.pin(args["door"], args["code"], side))
            if step.action == "configure":
                return await self._configure(args)
            decision = await self.paths.perform(step)
            return StepOutcome.of(decision)
        except ConfigError as error:
            return StepOutcome(error=str(error))
        except NotImplementedError as error:
            return StepOutcome(error=str(error))

    async def _configure(self, args: dict[str, object]) -> StepOutcome:
        actor = "scenario"
        if "lockdown" in args:
            door = args.get("door")
            await self.controller.set_lockdown(
                bool(args["lockdown"]), door=door if isinstance(door, str) else None, actor=actor
            )
            if isinstance(door, str):
                resolved = self.controller.core.door_state(door, self.clock.moment())
                return StepOutcome(state=resolved.state, state_source=resolved.source)
            return StepOutcome()
        door = str(args["door"])
        state = args["override"]
        minutes = args.get("minutes")
        resolved = await self.controller.set_override(
            door,
            state if isinstance(state, DoorState) else None,
            float(minutes) if isinstance(minutes, (int, float)) else None,
            actor=actor,
        )
        return StepOutcome(state=resolved.state, state_source=resolved.source)

    async def close(self) -> None:
        await self.paths.close()
        self.audit.close()
        self._folder.cleanup()
