"""Site-admin calls: doors and their state, overrides, lockdown.

A caller is a site admin when a trusted backend signs a token with
``role: site_admin`` AND its ``sub`` is an enabled user the site file makes a
``site_admin``: the backend vouches for who is asking, the site file is the
authority on who administers the site. Anything less is 403. A person in a
browser presents a console session cookie instead (service/sessions.py:
the same site-file check on every request, plus CSRF on every change).
Changes go through the controller, which records each in the audit log
with the acting admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import hdrs, web

from passbridge.core.model import DoorState
from passbridge.core.schedule import override_minutes_problem
from passbridge.errors import UnknownDoor
from passbridge.service.http import ApiError, json_body
from passbridge.service.one_time import enabled_site_admin
from passbridge.service.routes_decisions import authenticate_backend
from passbridge.service.runtime import Services
from passbridge.service.sessions import COOKIE, SESSIONS, Session, check_csrf, current_session
from passbridge.service.state import SERVICES

SITE_ADMIN = "site_admin"


@dataclass(frozen=True, slots=True)
class AdminCaller:
    """A site admin, by backend token or by console session.

    ``actor`` names them in the audit log: ``<backend>:<user>`` for a
    token, ``session:<user>`` for a session. ``expires_at`` is when the
    credential ends (the token's ``exp``, the session's absolute expiry).
    """

    user: str
    actor: str
    expires_at: datetime
    session: Session | None = None


def is_site_admin(services: Services, user_id: str) -> bool:
    """The site file's word: an enabled user whose role is ``site_admin``."""
    return enabled_site_admin(services.site, user_id)


def authenticate_admin(request: web.Request, services: Services) -> AdminCaller:
    """The site admin making this request: a verified admin token (401 if
    it does not verify, 403 if its caller is not a site admin), or, with no
    Authorization header, a console session (401 if none is live; 403 on a
    change without the session's CSRF token)."""
    if hdrs.AUTHORIZATION not in request.headers and COOKIE in request.cookies:
        session = current_session(request, services.site)
        check_csrf(request, session)
        store = request.app[SESSIONS]
        store.touch(session)
        return AdminCaller(session.user, session.actor, store.absolute_expires(session), session)
    caller = authenticate_backend(request, services, door=None, path="admin")
    if caller.role != SITE_ADMIN or not is_site_admin(services, caller.user):
        raise ApiError(403, "forbidden", "site admins only")
    return AdminCaller(caller.user, f"{caller.issuer}:{caller.user}", caller.expires_at)


def require_admin(request: web.Request, services: Services) -> str:
    """The acting admin, as the audit log names them (AdminCaller.actor)."""
    return authenticate_admin(request, services).actor


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


async def list_lockouts(request: web.Request) -> web.Response:
    """Who is locked out of two-factor entry where, and which keypads are
    locked for PIN-only entry, each with when it ends."""
    services = request.app[SERVICES]
    require_admin(request, services)
    moment = services.clock.moment()

    def until(elapsed: float) -> str:
        return (moment.utc + timedelta(seconds=elapsed - moment.elapsed)).isoformat()

    users, keypads = [], []
    for lockout in services.core.lockouts(moment):
        entry: dict[str, Any] = {"door": lockout.door, "until": until(lockout.until),
                                 "seconds_left": round(lockout.until - moment.elapsed, 1),
                                 "lockouts": lockout.lockouts}
        if lockout.user is not None:
            users.append({"user": lockout.user, **entry})
        elif lockout.side is not None:
            keypads.append({"side": lockout.side.value, **entry})
    return web.json_response({"users": users, "keypads": keypads, "at": moment.utc.isoformat()})


async def delete_lockout(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    actor = require_admin(request, services)  # before the door, as in get_door
    door, user = request.match_info["door"], request.match_info["user"]
    services.core.door(door)
    if not await services.controller.clear_lockout(door, user, actor=actor):
        raise ApiError(404, "not_locked_out", f"user {user!r} is not locked out at {door!r}")
    return web.json_response({"door": door, "user": user, "cleared": True})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/doors", list_doors)
    app.router.add_get("/v1/doors/{door}", get_door)
    app.router.add_put("/v1/doors/{door}/override", put_override)
    app.router.add_put("/v1/site/lockdown", put_lockdown)
    app.router.add_get("/v1/lockouts", list_lockouts)
    app.router.add_delete("/v1/doors/{door}/lockouts/{user}", delete_lockout)
