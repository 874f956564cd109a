"""Everything one scenario runs on: a manual clock, fresh keys, the service's
own wiring (core, bridge, controller) over a real SQLite audit log in a
temporary folder, the real aiohttp app on a loopback port, and the
simulated radios.

Only the clock and the simulated devices know this is a scenario: each
action enters the production path at the device edge.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from aiohttp import ClientResponse, ClientSession, web
from pydantic import ValidationError

from passbridge.adapters.keystore import MemoryKeyStore
from passbridge.answers import DecisionAnswer
from passbridge.clock import ManualClock
from passbridge.core.decision import Decision
from passbridge.core.model import DoorState, Reason, Result, Side, TrustedKey
from passbridge.core.tokens import generate_private_key, new_jti, public_key_to_pem
from passbridge.errors import ConfigError, UnknownDoor
from passbridge.scenario.model import Scenario, Step
from passbridge.service.app import create_app
from passbridge.service.runtime import Services, audited_services
from passbridge.sim.phone import SimulatedPhone
from passbridge.sim.radios import NfcTapReport, SimulatedRadios, SimulationError
from passbridge.sim.wired import WiredDoors, close_wired_doors, simulated_wired_doors

SCENARIO_BACKEND = "scenario-backend"
VIA_DIRECT, VIA_OSDP = "direct", "osdp"
VIAS = (VIA_DIRECT, VIA_OSDP)
REMOTE_REQUEST_LIFETIME = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class StepOutcome:
    result: Result | None = None
    reason: Reason | None = None
    user: str | None = None
    state: DoorState | None = None
    state_source: str | None = None
    error: str | None = None
    # nfc steps: the EXCHANGE reader status the phone received (4 hex digits,
    # None if none reached it) and the status word of a phone that refused it.
    phone_status: str | None = None
    phone_refusal: str | None = None

    @classmethod
    def of(cls, decision: Decision) -> StepOutcome:
        return cls(
            decision.result, decision.reason, decision.user, decision.state, decision.state_source
        )

    @classmethod
    def of_tap(cls, tap: NfcTapReport) -> StepOutcome:
        d = tap.decision
        return cls(
            d.result, d.reason, d.user, d.state, d.state_source,
            phone_status=None if tap.phone_status is None else f"{tap.phone_status:04X}",
            phone_refusal=None if tap.phone_refusal is None else f"{tap.phone_refusal:04X}",
        )

    @classmethod
    def of_json(cls, body: Any) -> StepOutcome:
        """An HTTP answer, read through the one model of a decision's JSON
        (``passbridge.answers``); ValidationError when it is not one."""
        answer = DecisionAnswer.model_validate(body)
        return cls(
            Result(answer.result),
            Reason(answer.reason),
            answer.user,
            DoorState(answer.state) if answer.state else None,
            answer.state_source,
        )


class ScenarioRig:
    def __init__(
        self,
        scenario: Scenario,
        clock: ManualClock,
        services: Services,
        phones: dict[str, SimulatedPhone],
        backend_key: Any,
        folder: tempfile.TemporaryDirectory[str],
        wired: WiredDoors | None = None,
    ) -> None:
        self.scenario = scenario
        self.clock = clock
        self.services = services
        self.controller = services.controller
        self.phones = phones
        self.radios = SimulatedRadios(
            services.controller, services.keystore, clock, services.proximity, phones,
            refusals=services.metrics,
        )
        self._backend_key = backend_key
        self._folder = folder
        # ``via="osdp"``: card and pin steps go through simulated OSDP readers.
        self.wired = wired
        self._http_runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._base_url = ""

    @classmethod
    async def start(cls, scenario: Scenario, *, pin_key: bytes, start: datetime,
                    via: str = VIA_DIRECT) -> ScenarioRig:
        """``via``: how card and pin steps enter (VIA_DIRECT: the wired
        devices' controller calls; VIA_OSDP: a simulated OSDP reader with
        keypad at each door side, over a pty, through the service's panel)."""
        if via not in VIAS:
            raise ValueError(f"via must be one of {', '.join(VIAS)}")
        site = scenario.site
        clock = ManualClock(start)
        keystore = MemoryKeyStore(clock=clock, pin_key=pin_key)
        backend_key = generate_private_key("ES256")
        keystore.add_trusted_key(
            "backend", TrustedKey(SCENARIO_BACKEND, "ES256", public_key_to_pem(backend_key))
        )
        folder = tempfile.TemporaryDirectory(prefix="passbridge-scenario-")
        try:
            services = audited_services(site, clock=clock, keystore=keystore,
                                        audit_path=Path(folder.name) / "audit.sqlite3")
        except BaseException:
            folder.cleanup()
            raise
        phones: dict[str, SimulatedPhone] = {}
        for phone_id, user_id in site.user_by_phone.items():
            phone = SimulatedPhone.create(phone_id)
            keystore.enroll_phone(phone_id, user_id, phone.public_key_point)
            phones[phone_id] = phone
        for phone_id in scenario.stranger_phones:
            phones[phone_id] = SimulatedPhone.create(phone_id)  # keys, but enrolled to nobody
        wired = None
        if via == VIA_OSDP:
            try:
                wired = await simulated_wired_doors(services, Path(folder.name) / "osdp")
            except BaseException:
                await services.audit.store.close()
                folder.cleanup()
                raise
        return cls(scenario, clock, services, phones, backend_key, folder, wired)

    async def perform(self, step: Step) -> StepOutcome:
        args, side = step.args, step.side
        try:
            if step.action == "card":
                if self.wired is not None:
                    return StepOutcome.of(await self.wired.card(args["door"], args["number"],
                                                                side))
                return StepOutcome.of(
                    await self.controller.card(args["door"], args["number"], side)
                )
            if step.action == "pin":
                if self.wired is not None:
                    return StepOutcome.of(await self.wired.pin(args["door"], args["code"], side))
                return StepOutcome.of(await self.controller.pin(args["door"], args["code"], side))
            if step.action == "configure":
                return await self._configure(args)
            if step.action == "nfc":
                return StepOutcome.of_tap(
                    await self.radios.nfc_tap_report(args["phone"], args["door"], side)
                )
            if step.action == "ble":
                decision = await self.radios.ble_unlock(
                    args["phone"], args["door"], side, args["rssi"]
                )
                return StepOutcome.of(decision)
            if step.action == "nearby":
                return await self._nearby(args["phone"], args["door"], args["rssi"], side)
            if step.action == "remote":
                return await self._remote(args["user"], args["door"], side.value)
            raise ValueError(f"unknown action {step.action}")
        except (ConfigError, SimulationError, UnknownDoor) as error:
            return StepOutcome(error=str(error))

    # --- the HTTP paths ------------------------------------------------------
    async def _http(self) -> ClientSession:
        """The real app on an ephemeral loopback port, started at the first
        HTTP step: aiohttp's public runner and site, and a plain client
        session (a scenario run is not a test harness)."""
        if self._session is None:
            self.services.close_audit = False  # the rig closes it after the app
            runner = web.AppRunner(create_app(self.services), access_log=None)
            self._http_runner = runner  # set first: close() cleans up a half start
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            self._base_url = f"http://{host}:{port}"
            self._session = ClientSession()
        return self._session

    async def _remote(self, user: str, door: str, side: str) -> StepOutcome:
        """The app backend asks for a remote unlock, signed with the scenario's key."""
        now = self.clock.now()
        claims: dict[str, Any] = {
            "iss": SCENARIO_BACKEND,
            "aud": self.scenario.site.id,
            "sub": user,
            "door": door,
            "iat": int(now.timestamp()),
            "exp": int((now + REMOTE_REQUEST_LIFETIME).timestamp()),
            "jti": new_jti(),
        }
        if side != "in":
            claims["side"] = side
        token = jwt.encode(
            claims, self._backend_key, algorithm="ES256", headers={"kid": SCENARIO_BACKEND}
        )
        client = await self._http()
        async with client.post(
            f"{self._base_url}/v1/doors/{door}/remote-unlock",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            return await self._outcome(response)

    async def _nearby(
        self, phone_id: str, door: str, rssi: int | None, side: Side
    ) -> StepOutcome:
        """The phone advertises near the door's radio on ``side`` (or is not
        seen), then the app asks; the side is the radio's, not in the request."""
        adv = await self.radios.advertise(phone_id, rssi, door, side)
        phone = self.radios.phone(phone_id)
        token = phone.nearby_request(door, adv, issued_at=self.clock.now().timestamp())
        client = await self._http()
        async with client.post(
            f"{self._base_url}/v1/doors/{door}/nearby-unlock",
            data=token,
            headers={"Content-Type": "application/jwt"},
        ) as response:
            return await self._outcome(response)

    @staticmethod
    async def _outcome(response: ClientResponse) -> StepOutcome:
        body = await response.json()
        if response.status != 200:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            return StepOutcome(
                error=f"HTTP {response.status} {error.get('code')}: {error.get('message')}"
            )
        try:
            return StepOutcome.of_json(body)
        except ValidationError as error:
            return StepOutcome(error=f"HTTP 200 but not a decision: {error.errors()[0]['msg']} "
                                     f"at {error.errors()[0]['loc']}")

    # --- admin ---------------------------------------------------------------
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
            minutes if isinstance(minutes, int) else None,  # checked at load
            actor=actor,
        )
        return StepOutcome(state=resolved.state, state_source=resolved.source)

    async def close(self) -> None:
        """Client, server, radios, audit log, folder: each is closed even
        when an earlier one fails, and the audit log only after the app."""
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self._folder.cleanup)
            stack.push_async_callback(self.services.audit.store.close)
            stack.push_async_callback(self.radios.close)
            if self.wired is not None:
                stack.push_async_callback(close_wired_doors, self.wired)
            if self._http_runner is not None:
                stack.push_async_callback(self._http_runner.cleanup)
            if self._session is not None:
                stack.push_async_callback(self._session.close)
