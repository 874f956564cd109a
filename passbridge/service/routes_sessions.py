"""Signing people in: sign-in links and console sessions.

``POST /v1/console-links`` (a site admin, usually the app backend) mints a
single-use link for a site admin; ``passbridge console-link`` does the same
from the command line. ``POST /v1/session`` redeems a link's token for a
session cookie; ``GET`` shows the session, ``DELETE`` signs out. The rules
are in service/sessions.py and service/one_time.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from passbridge.service import one_time
from passbridge.service.http import ApiError, json_body
from passbridge.service.one_time import SIGN_IN, Redeemed, enabled_site_admin
from passbridge.service.routes_admin import authenticate_admin
from passbridge.service.sessions import (
    COOKIE,
    SESSIONS,
    check_csrf,
    clear_cookie,
    current_session,
    set_cookie,
)
from passbridge.service.state import SERVICES

_LINK_REFUSED = {
    Redeemed.UNKNOWN: ("link_invalid", "this sign-in link is not known here"),
    Redeemed.USED: ("link_used", "this sign-in link has already been used; ask for a new one"),
    Redeemed.EXPIRED: ("link_expired", "this sign-in link has expired; ask for a new one"),
}


def _secret_field(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= one_time.MAX_SECRET_CHARS \
            or not value.isascii():
        raise ApiError(400, "malformed_body",
                       f"{name}: expected a string of 1-{one_time.MAX_SECRET_CHARS} characters")
    return value


def request_base(request: web.Request) -> str:
    """This service's address as the caller reached it (the links it mints point here)."""
    return f"{request.scheme}://{request.host}"


async def post_console_link(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    caller = authenticate_admin(request, services)
    data = await json_body(request)
    user = data.get("user")
    if not isinstance(user, str) or not user:
        raise ApiError(400, "malformed_body", "user: expected a user id")
    if not enabled_site_admin(services.site, user):
        raise ApiError(422, "not_site_admin",
                       f"user: {user!r} is not an enabled site admin of this site")
    url, expires = await asyncio.to_thread(
        one_time.mint_sign_in_link, services.keystore, user, issued_by=caller.actor,
        now=services.clock.now(), base=request_base(request))
    await services.audit.record_change("console_link_issued", {
        "user": user, "actor": caller.actor, "expires": expires.isoformat(),
        "at": services.clock.now().isoformat()})
    return web.json_response({"url": url, "expires": expires.isoformat()})


async def post_session(request: web.Request) -> web.Response:
    """Redeem a sign-in link's token: a session for an enabled site admin."""
    services = request.app[SERVICES]
    data = await json_body(request)
    token = _secret_field(data, "token")
    found, code = await asyncio.to_thread(
        one_time.redeem, services.keystore, SIGN_IN, token, services.clock.now())
    if found is not Redeemed.OK or code is None:
        services.metrics.one_time_refused(SIGN_IN, found.value)
        error, message = _LINK_REFUSED[found]
        raise ApiError(401, error, message)
    site = services.site
    if not enabled_site_admin(site, code.user_id):
        # The link was good but its user lost the role since: used up, no session.
        services.metrics.one_time_refused(SIGN_IN, "not_site_admin")
        raise ApiError(403, "not_site_admin", "the link's user is not an enabled site admin "
                       "of this site (any more)")
    store = request.app[SESSIONS]
    session_id, session = store.start(code.user_id, site.id)
    await services.audit.record_change("session_started", {
        "user": session.user, "actor": session.actor, "link_issued_by": code.issued_by,
        "at": services.clock.now().isoformat()})
    response = web.json_response(store.to_json(session),
                                 headers={"Cache-Control": "no-store"})
    set_cookie(request, response, session_id, store.absolute)
    return response


async def get_session(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    store = request.app[SESSIONS]
    session = current_session(request, services.site)
    store.touch(session)
    return web.json_response(store.to_json(session), headers={"Cache-Control": "no-store"})


async def delete_session(request: web.Request) -> web.Response:
    """Sign out: the session ends here and the browser drops the cookie."""
    services = request.app[SERVICES]
    store = request.app[SESSIONS]
    if COOKIE not in request.cookies:
        raise ApiError(401, "missing_credentials", "no console session to sign out of")
    session = current_session(request, services.site)
    check_csrf(request, session)
    store.end(session)
    await services.audit.record_change("session_ended", {
        "user": session.user, "actor": session.actor, "at": services.clock.now().isoformat()})
    response = web.Response(status=204)
    clear_cookie(request, response)
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/console-links", post_console_link)
    app.router.add_post("/v1/session", post_session)
    app.router.add_get("/v1/session", get_session)
    app.router.add_delete("/v1/session", delete_session)
