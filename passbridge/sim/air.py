"""The simulated radios of ``passbridge serve --simulate`` (opt-in: a plain
``serve`` runs none, enrols no simulated phone and has no /v1/sim routes).

The service then hosts a simulated phone for every phone of the site file,
its key kept in ``<database folder>/sim-phones/<phone>.pem`` (0600) and
enrolled on first start, and answers ``/v1/sim/...`` so that ``passbridge
sim nfc|ble|nearby`` can make those phones tap, approach and advertise.
From the simulated phone onward everything is the production path:
nfcpy's reader over its udp driver, bleak over the bumble backend, the
bridge, the signed token, the core, the audit log. None of these routes
exist for a radio kind that is real hardware.

The routes stand in for a door side's radio, so they take that door side's
reader device key, exactly like ``POST /v1/doors/{door}/card``; and they
never say where anything lives on disk (the sim command finds the phone
keys beside the database it is pointed at). The console's tester panel
drives them with a site admin's session instead (cookie and CSRF header,
no Authorization header): a site admin may stand in for any door side's
device of a simulated service. The panel's badge, keypad and Nearby
buttons have routes here too (``card``, ``keypad``, ``nearby``: the same
controller calls as the wired routes and the same Nearby verification as
the phone's route), and ``POST /v1/sim/scenario`` runs an uploaded scenario
file in its own in-memory rig, never on this service's doors.

This module lives with the simulators, not in the service: the service
never imports a simulator. ``serve --simulate`` (cli/serve.py) makes the
air and hands it to ``create_app``, which mounts its routes through
``SimulatedAir.add_routes``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web

from passbridge.adapters.keystore import DeviceKey, DeviceKind
from passbridge.core.decision import Decision
from passbridge.core.model import Side, Site
from passbridge.core.tokens import load_private_key_pem, private_key_to_pem
from passbridge.ids import file_for_id
from passbridge.service.http import ApiError, json_body, read_body
from passbridge.service.routes_admin import require_admin
from passbridge.service.routes_decisions import (
    MAX_CARD_CHARS,
    MAX_CODE_CHARS,
    decide_nearby,
    device_caller,
    require_device,
    text_field,
)
from passbridge.service.runtime import Services
from passbridge.service.state import SERVICES
from passbridge.sim.phone import SimulatedPhone
from passbridge.sim.radios import SimulatedRadios, SimulationError
from passbridge.sim.wired import WiredDoors, wiegand_number

log = logging.getLogger(__name__)

SIM_PHONES_DIR = "sim-phones"


def phone_key_path(phones_dir: Path, phone_id: str) -> Path:
    """The phone's key file, always inside ``phones_dir`` (ValueError for a
    phone id that is not an id; the site file refuses those at load)."""
    return file_for_id(phones_dir, phone_id, ".pem", what="phone id")


class SimulatedAir:
    """A Radio (start/stop) holding the simulated phones and the air they share."""

    def __init__(
        self, services: Services, phones_dir: Path, *, nfc: bool = True, ble: bool = True,
        wired: WiredDoors | None = None,
    ) -> None:
        """``nfc``/``ble``: which radio kinds are simulated (the others are real
        hardware, and their /v1/sim routes answer 409). ``wired``: the door
        sides with a simulated OSDP reader; their card and keypad routes go
        through it (sim/wired.py) instead of straight to the controller."""
        self._services = services
        self.phones_dir = phones_dir
        self.nfc = nfc
        self.ble = ble
        self.wired = wired
        self.phones: dict[str, SimulatedPhone] = {}
        self._radios: SimulatedRadios | None = None

    @property
    def radios(self) -> SimulatedRadios:
        if self._radios is None:
            raise ApiError(503, "radios_not_started", "the simulated radios are not running")
        return self._radios

    async def start(self) -> None:
        services = self._services
        self.phones_dir.mkdir(parents=True, exist_ok=True)
        for phone_id, user_id in services.site.user_by_phone.items():
            self._add_phone(phone_id, user_id)
        services.reloads.listeners.append(self._site_changed)
        self._radios = SimulatedRadios(
            services.controller, services.keystore, services.clock, services.proximity,
            self.phones, refusals=services.metrics,
        )
        log.info("simulated radios: %d phones (keys in %s)", len(self.phones), self.phones_dir)

    def _add_phone(self, phone_id: str, user_id: str) -> None:
        """Host a simulated phone for a phone of the site file, enrolled on first use."""
        keystore = self._services.keystore
        phone = self._load_or_create(phone_id)
        enrolment = keystore.phone(phone_id)
        if enrolment is None:
            keystore.enroll_phone(phone_id, user_id, phone.public_key_point)
        elif enrolment.public_key != phone.public_key_point:
            log.warning(
                "phone %s is enrolled with another key; its simulated taps will be "
                "refused (unknown_credential)", phone_id,
            )
        self.phones[phone_id] = phone

    def _site_changed(self, _old: Site, new: Site) -> None:
        """A live reload added phones: host them too (a removed phone's
        simulated twin stays, and the core refuses it as unknown)."""
        for phone_id, user_id in new.user_by_phone.items():
            if phone_id not in self.phones:
                self._add_phone(phone_id, user_id)

    def _load_or_create(self, phone_id: str) -> SimulatedPhone:
        path = phone_key_path(self.phones_dir, phone_id)
        if path.exists():
            key = load_private_key_pem(path.read_text(), "ES256")
            return SimulatedPhone(phone_id, key)  # type: ignore[arg-type]
        phone = SimulatedPhone.create(phone_id)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(private_key_to_pem(phone.credential_key))
        return phone

    async def stop(self) -> None:
        if self._site_changed in self._services.reloads.listeners:
            self._services.reloads.listeners.remove(self._site_changed)
        if self._radios is not None:
            await self._radios.close()
            self._radios = None

    def add_routes(self, app: web.Application) -> None:
        """The /v1/sim routes (service.app.SimulatedRoutes)."""
        add_simulated_radios(app, self)


SIM_AIR = web.AppKey("sim_air", SimulatedAir)


def _side(data: dict[str, Any]) -> Side:
    value = data.get("side", "in")
    if value not in ("in", "out"):
        raise ApiError(400, "malformed_body", "side must be 'in' or 'out'")
    return Side(value)


def _phone(data: dict[str, Any], air: SimulatedAir) -> str:
    phone = data.get("phone")
    if not isinstance(phone, str) or phone not in air.phones:
        known = ", ".join(sorted(air.phones)) or "none"
        raise ApiError(404, "no_such_phone", f"no simulated phone {phone!r} (phones: {known})")
    return phone


def _rssi(data: dict[str, Any], default: int | None) -> int | None:
    value = data.get("rssi", default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not -127 <= value <= 20:
        raise ApiError(400, "malformed_body", "rssi must be an integer dBm (-127..20) or null")
    return value


def _answer(decision: Decision) -> web.Response:
    return web.json_response(decision.to_json())


def _device(request: web.Request) -> DeviceKey | None:
    """Who is calling, before anything else: a device key (Authorization
    header; 401 without a valid one), or else a site admin's console session
    (cookie, and the CSRF header on a POST; 401/403 otherwise), returned as
    None: an admin may stand in for any door side's device."""
    services = request.app[SERVICES]
    if "Authorization" in request.headers:
        return device_caller(request, services)
    require_admin(request, services)
    return None


def _check_device(
    request: web.Request, key: DeviceKey | None, door: str, side: Side, kind: DeviceKind
) -> None:
    """403 unless ``key`` is that door side's device of ``kind`` (an admin's
    session may drive any), then 404 for a door the site does not have."""
    services = request.app[SERVICES]
    if key is not None:
        require_device(services, key, door, side, kind)
    services.core.door(door)  # UnknownDoor -> 404


async def _door_side(
    request: web.Request, key: DeviceKey | None, kind: DeviceKind = DeviceKind.READER
) -> tuple[str, Side, dict[str, Any]]:
    """The door side this call drives (default: the key's own side, or ``in``),
    and its body; see _check_device."""
    data = await json_body(request)
    data.setdefault("side", key.side.value if key is not None else Side.IN.value)
    door, side = request.match_info["door"], _side(data)
    _check_device(request, key, door, side, kind)
    return door, side, data


async def describe(request: web.Request) -> web.Response:
    _device(request)
    air = request.app[SIM_AIR]
    services = request.app[SERVICES]
    return web.json_response({
        "simulated": {"nfc": air.nfc, "ble": air.ble},
        "phones": sorted(air.phones),
        # Door sides whose card and keypad routes go through a simulated OSDP reader.
        "wired": [] if air.wired is None else
        [f"{door}/{side.value}" for door, side in air.wired.sides()],
        "reader_public_key": services.keystore.reader_key().public_key.hex(),
    })


def _simulated(air: SimulatedAir, kind: str) -> None:
    if not getattr(air, kind):
        raise ApiError(409, "radio_is_real", f"this service's {kind.upper()} radio is real "
                       "hardware; simulated phones cannot use it")


async def nfc_tap(request: web.Request) -> web.Response:
    key = _device(request)
    air = request.app[SIM_AIR]
    _simulated(air, "nfc")
    door, side, data = await _door_side(request, key)
    try:
        tap = await air.radios.nfc_tap_report(_phone(data, air), door, side)
    except SimulationError as error:
        raise ApiError(503, "simulation_failed", str(error)) from None
    # What the simulated phone was told at the door (protocols/nfc, reader status).
    status = None if tap.phone_status is None else f"{tap.phone_status:04X}"
    return web.json_response({**tap.decision.to_json(), "phone_status": status})


async def ble_unlock(request: web.Request) -> web.Response:
    key = _device(request)
    air = request.app[SIM_AIR]
    _simulated(air, "ble")
    door, side, data = await _door_side(request, key)
    rssi = _rssi(data, -50)
    if rssi is None:
        raise ApiError(400, "malformed_body", "a Bluetooth unlock needs an rssi")
    try:
        return _answer(await air.radios.ble_unlock(_phone(data, air), door, side, rssi))
    except SimulationError as error:
        raise ApiError(503, "simulation_failed", str(error)) from None


async def advertise(request: web.Request) -> web.Response:
    """The phone advertises near one door radio, the one whose reader key the
    caller presents (the body's ``door``/``side``, default the key's own,
    must be that key's): only that radio hears it, as Nearby evidence must
    come from the asked door."""
    key = _device(request)
    air = request.app[SIM_AIR]
    _simulated(air, "ble")
    data = await json_body(request)
    door = data.get("door", key.door if key is not None else None)
    if not isinstance(door, str):
        raise ApiError(400, "malformed_body", "door must be a door id")
    data.setdefault("side", key.side.value if key is not None else Side.IN.value)
    _check_device(request, key, door, _side(data), DeviceKind.READER)
    data["phone"] = request.match_info["phone"]
    try:
        adv = await air.radios.advertise(_phone(data, air), _rssi(data, -70), door, _side(data))
    except SimulationError as error:
        raise ApiError(503, "simulation_failed", str(error)) from None
    return web.json_response({"adv": adv})


async def nearby_unlock(request: web.Request) -> web.Response:
    """The whole Nearby path for a simulated phone: it advertises near the
    door side's radio (``rssi`` null: it is not seen), then signs the
    request the app would send with its own key, and the service verifies
    and decides it exactly as ``POST /v1/doors/{door}/nearby-unlock``."""
    key = _device(request)
    air = request.app[SIM_AIR]
    _simulated(air, "ble")
    door, side, data = await _door_side(request, key)
    phone = _phone(data, air)
    services = request.app[SERVICES]
    try:
        adv = await air.radios.advertise(phone, _rssi(data, -60), door, side)
    except SimulationError as error:
        raise ApiError(503, "simulation_failed", str(error)) from None
    token = air.phones[phone].nearby_request(door, adv,
                                             issued_at=services.clock.now().timestamp())
    return _answer(await decide_nearby(services, door, token))


async def card(request: web.Request) -> web.Response:
    """A badge presented at the door side's reader (what ``POST
    /v1/doors/{door}/card`` does for a wired reader)."""
    key = _device(request)
    door, side, data = await _door_side(request, key)
    number = text_field(data, "number", MAX_CARD_CHARS, digits=False)
    wired = request.app[SIM_AIR].wired
    if wired is not None and wired.has(door, side):
        # The door side's simulated OSDP reader presents it: Wiegand bits, the
        # panel, the secure channel, the decoder, then the controller.
        if wiegand_number(number) is None:
            raise ApiError(400, "malformed_body", "number: a wired reader sends a card "
                           "number as digits without leading zeros")
        try:
            return _answer(await wired.card(door, number, side))
        except SimulationError as error:
            raise ApiError(503, "simulation_failed", str(error)) from None
    return _answer(await request.app[SERVICES].controller.card(door, number, side))


async def keypad(request: web.Request) -> web.Response:
    """An entry code typed on the door side's keypad (``POST /v1/doors/{door}/keypad``)."""
    key = _device(request)
    door, side, data = await _door_side(request, key, DeviceKind.KEYPAD)
    code = text_field(data, "code", MAX_CODE_CHARS, digits=True)
    wired = request.app[SIM_AIR].wired
    if wired is not None and wired.has(door, side):
        try:  # typed on the simulated OSDP reader's keypad, then '#'
            return _answer(await wired.pin(door, code, side))
        except SimulationError as error:
            raise ApiError(503, "simulation_failed", str(error)) from None
    return _answer(await request.app[SERVICES].controller.pin(door, code, side))


# One uploaded scenario at a time: each runs a whole rig (radios, audit file).
_SCENARIO_LOCK = web.AppKey("sim_scenario_lock", asyncio.Lock)
SCENARIO_SECONDS = 120.0


async def run_scenario(request: web.Request) -> web.Response:
    """Run an uploaded scenario file (YAML, as ``passbridge scenario run``
    reads it) in its own fresh in-memory rig: the scenario's site, clock,
    phones and audit log, never this service's doors or log. Answers the
    per-step report of ``scenario run --json``, or 422 with placed errors."""
    _device(request)
    # Only here: a service that never runs an uploaded scenario never loads the runner.
    from passbridge.scenario.loader import parse_scenario
    from passbridge.scenario.runner import describe_step
    from passbridge.scenario.runner import run_scenario as run
    from passbridge.site_file.document import parse_document

    raw = await read_body(request)
    pin_key = secrets.token_bytes(32)
    # Placed problems are ConfigError, answered 422 by the service's error middleware.
    document = parse_document(raw, "uploaded scenario")
    scenario = parse_scenario(document, file="uploaded scenario", pin_key=pin_key)
    lock = request.app[_SCENARIO_LOCK]
    if lock.locked():
        raise ApiError(409, "scenario_running", "another scenario is running; try again soon")
    async with lock:
        try:
            async with asyncio.timeout(SCENARIO_SECONDS):
                report = await run(scenario, pin_key)
        except TimeoutError:
            raise ApiError(503, "simulation_failed",
                           f"the scenario did not finish within {SCENARIO_SECONDS:g} s") from None
    tz = scenario.site.timezone
    steps = [{**step.to_json(tz), "step": describe_step(step.step)} for step in report.steps]
    return web.json_response({"name": scenario.name, "passed": report.passed, "steps": steps})


def add_simulated_radios(app: web.Application, air: SimulatedAir) -> None:
    """Mount the simulation routes; the air itself is one of services.radios."""
    app[SIM_AIR] = air
    app[_SCENARIO_LOCK] = asyncio.Lock()
    app.router.add_get("/v1/sim", describe)
    app.router.add_post("/v1/sim/doors/{door}/nfc", nfc_tap)
    app.router.add_post("/v1/sim/doors/{door}/ble", ble_unlock)
    app.router.add_post("/v1/sim/phones/{phone}/advertise", advertise)
    app.router.add_post("/v1/sim/doors/{door}/nearby", nearby_unlock)
    app.router.add_post("/v1/sim/doors/{door}/card", card)
    app.router.add_post("/v1/sim/doors/{door}/keypad", keypad)
    app.router.add_post("/v1/sim/scenario", run_scenario)
