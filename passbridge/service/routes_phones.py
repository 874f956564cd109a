"""Phones without the command line: enrolment codes, enrolment, revocation.

A site admin asks for a one-time code for a user (``POST
/v1/users/{user}/enrolments``); the user's phone app sends it with its
public key (``POST /v1/enrol``, no other credential) and gets back the
reader public key it must trust; ``DELETE /v1/phones/{phone}`` revokes a
phone, effective on its next tap (the NFC and BLE paths look the enrolment
up in the key store on every authentication).

The code proves only that a site admin meant *this user* to enrol a phone,
so the phone id must be one the site file lists for that user: a code for
bob can never take over alice's phone id. A wrong code is counted in
``passbridge_one_time_code_failures_total`` and never written to the audit
log (unauthenticated input makes no durable write); attempts are limited
to ``ENROL_BURST`` at once and one per ``1 / ENROL_RATE`` seconds after,
for the whole service, on top of the codes' 80 bits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

from aiohttp import web

from passbridge.bridge.flood import TokenBucket
from passbridge.ids import id_problem
from passbridge.p256 import load_public_key
from passbridge.service import one_time
from passbridge.service.http import ApiError, json_body
from passbridge.service.one_time import ENROL, Redeemed
from passbridge.service.routes_admin import require_admin
from passbridge.service.state import SERVICES

# Enrolment attempts with a well-formed body, service-wide: 10 at once,
# then one every 6 s (docs/decisions.md, "Enrolment codes").
ENROL_RATE = 1 / 6
ENROL_BURST = 10
ENROL_LIMIT = web.AppKey("enrol_limit", TokenBucket)

_CODE_REFUSED = {
    Redeemed.UNKNOWN: ("code_invalid", "this enrolment code is not known here"),
    Redeemed.USED: ("code_used", "this enrolment code has already been used"),
    Redeemed.EXPIRED: ("code_expired", "this enrolment code has expired; ask for a new one"),
}


def _user_phones(services: Any, user: str) -> list[str]:
    return sorted(p for p, owner in services.site.user_by_phone.items() if owner == user)


async def post_enrolment_code(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    actor = require_admin(request, services)  # before the user: no user enumeration by 404
    user_id = request.match_info["user"]
    user = services.site.users.get(user_id)
    if user is None:
        raise ApiError(404, "unknown_user", f"no user {user_id!r} in this site")
    phones = _user_phones(services, user_id)
    if not user.enabled or not phones:
        why = "is disabled" if not user.enabled else "has no phones listed in the site file"
        raise ApiError(422, "cannot_enrol", f"user {user_id!r} {why}: no phone could be "
                       "enrolled with a code")
    issued = await asyncio.to_thread(
        one_time.issue, services.keystore, ENROL, user_id, issued_by=actor,
        now=services.clock.now(), seconds=one_time.ENROL_SECONDS)
    await services.audit.record_change("enrolment_code_issued", {
        "user": user_id, "actor": actor, "expires": issued.expires.isoformat(),
        "at": services.clock.now().isoformat()})
    return web.json_response({"code": one_time.shown_code(issued.secret),
                              "expires": issued.expires.isoformat(), "user": user_id,
                              "phones": phones}, headers={"Cache-Control": "no-store"})


def _public_key(value: object) -> bytes:
    """base64url (padding optional) of a 65-byte uncompressed P-256 point."""
    if isinstance(value, str) and value.isascii() and len(value) <= 100:
        try:
            point = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            load_public_key(point)
            return point
        except (binascii.Error, ValueError):
            pass
    raise ApiError(400, "malformed_body", "public_key: expected base64url of a 65-byte "
                   "uncompressed P-256 point (04 || x || y)")


async def post_enrol(request: web.Request) -> web.Response:
    """A phone app redeems an enrolment code with its public key."""
    services = request.app[SERVICES]
    data = await json_body(request)
    raw_code = data.get("code")
    code_text = one_time.normal_code(raw_code) if isinstance(raw_code, str) else None
    if code_text is None:
        raise ApiError(400, "malformed_body", f"code: expected {one_time.CODE_LENGTH} letters "
                       "and digits (dashes and spaces between groups allowed)")
    phone = data.get("phone")
    problem = id_problem(phone)
    if problem is not None or not isinstance(phone, str):
        raise ApiError(400, "malformed_body", f"phone: {problem or 'expected a phone id'}")
    point = _public_key(data.get("public_key"))
    wait = request.app[ENROL_LIMIT].try_take()
    if wait > 0:
        services.metrics.one_time_refused(ENROL, "rate_limited")
        raise ApiError(429, "too_many_attempts", "too many enrolment attempts; try again "
                       f"in {wait:.0f} s", retry_after=round(wait + 0.5))
    now = services.clock.now()
    found, code = await asyncio.to_thread(one_time.check, services.keystore, ENROL,
                                          code_text, now)
    if found is not Redeemed.OK or code is None:
        services.metrics.one_time_refused(ENROL, found.value)
        error, message = _CODE_REFUSED[found]
        raise ApiError(401, error, message)
    # Checked before the code is used up, so a typo in the phone id costs no code.
    user = services.site.users.get(code.user_id)
    if user is None or not user.enabled:
        raise ApiError(409, "cannot_enrol", "the code's user is no longer an enabled user "
                       "of this site")
    if services.site.user_by_phone.get(phone) != code.user_id:
        raise ApiError(409, "phone_not_listed", f"phone: {phone!r} is not one of the phones "
                       "the site file lists for this code's user")
    owner = services.keystore.credential_for_public_key(point)
    if owner is not None and owner != phone:
        raise ApiError(409, "key_in_use", "public_key: already enrolled for another phone")
    if not await asyncio.to_thread(one_time.use, services.keystore, code, now):
        services.metrics.one_time_refused(ENROL, Redeemed.USED.value)
        raise ApiError(401, *_CODE_REFUSED[Redeemed.USED])
    try:
        enrolment = await asyncio.to_thread(services.keystore.enroll_phone, phone,
                                            code.user_id, point)
    except ValueError as exc:
        raise ApiError(409, "key_in_use", f"public_key: {exc}") from None
    await services.audit.record_change("phone_enrolled", {
        "phone": phone, "user": code.user_id, "actor": code.issued_by,
        "via": "enrolment_code", "at": services.clock.now().isoformat()})
    reader = services.keystore.reader_key()
    return web.json_response({
        "phone": enrolment.credential_id,
        "user": enrolment.user_id,
        # As `passbridge keys show` prints them: the point in hex, the ids in hex.
        "reader_public_key": reader.public_key.hex(),
        "reader_group_id": reader.group_id.hex(),
        "reader_sub_id": reader.sub_id.hex(),
    })


async def delete_phone(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    actor = require_admin(request, services)
    phone = request.match_info["phone"]
    enrolment = services.keystore.phone(phone)
    if enrolment is None or enrolment.revoked:
        raise ApiError(404, "unknown_phone", f"no active phone {phone!r}")
    if not await asyncio.to_thread(services.keystore.revoke_phone, phone):
        raise ApiError(404, "unknown_phone", f"no active phone {phone!r}")
    await services.audit.record_change("phone_revoked", {
        "phone": phone, "user": enrolment.user_id, "actor": actor,
        "at": services.clock.now().isoformat()})
    return web.json_response({"phone": phone, "user": enrolment.user_id, "revoked": True})


def add_routes(app: web.Application) -> None:
    app[ENROL_LIMIT] = TokenBucket(ENROL_RATE, ENROL_BURST, app[SERVICES].clock)
    app.router.add_post("/v1/users/{user}/enrolments", post_enrolment_code)
    app.router.add_post("/v1/enrol", post_enrol)
    app.router.add_delete("/v1/phones/{phone}", delete_phone)
