"""Site-admin calls: doors and their state, overrides, lockdown.

A caller is a site admin when a trusted backend signs a token with
``role: site_admin`` AND its ``sub`` is an enabled user the site file makes a
``site_admin``: the backend vouches for who is asking, the site file is the
authority on who administers the site. Anything less is 403. Changes go
through the controller, which records each in the audit log.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from passbridge.core.model import DoorState
from passbridge.core.schedule import override_minutes_problem
from passbridge.core.tokens import VerifiedBackendRequest
from passbridge.errors import UnknownDoor
from passbridge.service.http import ApiError, json_body
from passbridge.service.routes_decisions import authenticate_backend
from passbridge.service.runtime import Services
from passbridge.service.state import SERVICES

SITE_ADMIN = "site_admin"


def is_site_admin(services: Services, user_id: str) -> bool:
    """The site file's word: an enabled user whose role is ``site_admin``."""
    user = services.site.users.get(user_id)
    return user is not None and user.enabled and user.is_site_admin


def authenticate_admin(request: web.Request, services: Services) -> VerifiedBackendRequest:
    """The verified admin token (401 if it does not verify, 403 if its
    caller is not a site admin)."""
    caller = authenticate_backend(request, services, door=None, path="admin")
    if caller.role != SITE_ADMIN or not is_site_admin(services, caller.user):
        raise ApiError(403, "forbidden", "site admins only")
    return caller


def require_admin(request: web.Request, services: Services) -> str:
    """The acting admin, as ``<backend>:<user>`` for the audit log."""
    caller = authenticate_admin(request, services)
    return f"{caller.issuer}:{caller.user}"


def door_json(services: Services, door_id: str) -> dict[str, Any]:
    door = services.core.door(door_id)
    moment = services.clock.moment()
    resolved = services.core.door_state(door_id, moment)
    override = services.core.override(door_id)
    site_lockdown, door_lockdowns = services.core.lockdown()
    return {
        "id": door.id,
        "name": door.name,
        "reader": door.reader,
        "keypad": door.keypad,
        "in_out": door.in_out,
        "strict_two_factor": door.strict_two_factor,
        "state": resolved.state.value,
        "state_source": resolved.source,
        "override": (
            {"state": override.state.value, "ends_at": override.ends_at.isoformat()}
            if override is not None else None
        ),
        "lockdown": site_lockdown or door_id in door_lockdowns,
        # Cards waiting for their entry code (the console's "entry code needed").
        "pending": [
            {"side": side.value, "user": card.user, "factor": card.factor.value,
             "seconds_left": max(0, int(left))}
            for side, card, left in services.core.pending_steps(door_id, moment)
        ],
        # Wired (OSDP) readers at this door and whether each answers its polls.
        "wired_readers": [
            {"side": reader.side.value, "online": reader.online}
            for reader in services.metrics.wired_readers() if reader.door == door_id
        ],
        "at": services.clock.now().isoformat(),
    }


async def list_doors(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    require_admin(request, services)
    return web.json_response({"doors": [door_json(services, d) for d in services.site.doors]})


async def get_door(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    require_admin(request, services)  # before the door: no door enumeration by 404 vs 401
    door = request.match_info["door"]
    services.core.door(door)
    return web.json_response(door_json(services, door))


async def put_override(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    actor = require_admin(request, services)  # before the door, as in get_door
    door = request.match_info["door"]
    services.core.door(door)
    data = await json_body(request)
    raw_state = data.get("state")
    state: DoorState | None
    if raw_state is None:
        state, minutes = None, None
    else:
        if raw_state not in {s.value for s in DoorState}:
            raise ApiError(400, "malformed_body", "state: expected one of "
                           + ", ".join(s.value for s in DoorState) + " or null")
        state = DoorState(raw_state)
        raw_minutes = data.get("minutes")
        if isinstance(raw_minutes, bool) or not isinstance(raw_minutes, int):
            # Not a whole number at all: a malformed body (400). A whole number
            # out of range is the core's ConfigError, a 422 naming the place.
            raise ApiError(400, "malformed_body",
                           f"minutes: {override_minutes_problem(raw_minutes)}")
        minutes = raw_minutes
    await services.controller.set_override(door, state, minutes, actor=actor)
    return web.json_response(door_json(services, door))


async def put_lockdown(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    actor = require_admin(request, services)
    data = await json_body(request)
    active, door = data.get("active"), data.get("door")
    if not isinstance(active, bool):
        raise ApiError(400, "malformed_body", "active: expected true or false")
    if door is not None and not isinstance(door, str):
        raise ApiError(400, "malformed_body", "door: expected a door id or null")
    if door is not None and door not in services.site.doors:
        raise UnknownDoor(door)
    await services.controller.set_lockdown(active, door=door, actor=actor)
    site_lockdown, doors = services.core.lockdown()
    return web.json_response({"site": site_lockdown, "doors": sorted(doors)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/doors", list_doors)
    app.router.add_get("/v1/doors/{door}", get_door)
    app.router.add_put("/v1/doors/{door}/override", put_override)
    app.router.add_put("/v1/site/lockdown", put_lockdown)
