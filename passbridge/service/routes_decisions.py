"""Requests that end in a door decision: remote, nearby, factor tokens, card, keypad.

Each handler only authenticates the caller and shapes the input; the
decision and its audit record are the controller's. A caller we cannot
authenticate gets 401 and no decision (nothing to attribute it to); once a
caller is authenticated the answer is the decision, 200 whatever it says.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from passbridge.adapters.keystore import DeviceKey, DeviceKind, PhoneEnrolment
from passbridge.bridge.proximity import nearby_evidence
from passbridge.core.decision import Decision
from passbridge.core.model import Factor, Reason, Side
from passbridge.core.tokens import (
    RefusedNearbyRequest,
    TokenRejection,
    UnverifiedToken,
    VerifiedBackendRequest,
    verify_backend_request,
    verify_nearby_request,
)
from passbridge.service.http import ApiError, bearer, bearer_value, body_text, json_body
from passbridge.service.runtime import Services
from passbridge.service.state import SERVICES

log = logging.getLogger(__name__)

MAX_CARD_CHARS = 64
MAX_CODE_CHARS = 32


def _answer(decision: Decision) -> web.Response:
    return web.json_response(decision.to_json())


def _door(request: web.Request, services: Services) -> str:
    """The path's door, once the caller is authenticated: an unknown door is
    404 only to a caller who proved who they are, so nobody learns the door
    ids by probing (an unauthenticated probe is 401 whatever the door)."""
    door = request.match_info["door"]
    services.core.door(door)  # UnknownDoor -> 404
    return door


def _side(value: object, where: str) -> Side:
    if value is None:
        return Side.IN
    if value not in ("in", "out"):
        raise ApiError(400, "malformed_body", f"{where}: side must be 'in' or 'out'")
    return Side(str(value))


def refused(services: Services, path: str, rejection: TokenRejection) -> ApiError:
    services.metrics.token_failure(path, rejection.reason)
    log.info("%s request refused: %s (%s)", path, rejection.reason.value, rejection.detail)
    return ApiError(401, rejection.reason.value, rejection.detail)


def authenticate_backend(
    request: web.Request, services: Services, *, door: str | None, path: str
) -> VerifiedBackendRequest:
    return _backend_caller(bearer(request), services, door=door, path=path)


def _backend_caller(
    token: str, services: Services, *, door: str | None, path: str
) -> VerifiedBackendRequest:
    checked = verify_backend_request(
        token, services.backends, site_id=services.site.id, clock=services.clock,
        replay_cache=services.request_replay, door=door, require_door=door is not None,
    )
    if isinstance(checked, TokenRejection):
        raise refused(services, path, checked)
    return checked


async def remote_unlock(request: web.Request) -> web.Response:
    # The body carries nothing the decision uses, but must be empty or a JSON
    # object (interfaces.md); checked before the token, so a refused body
    # never uses up the backend's single-use jti (and it names no door).
    await json_body(request, empty_ok=True)
    decision = await decide_remote_unlock(
        request.app[SERVICES], request.match_info["door"],
        request.headers.get("Authorization", ""))
    return _answer(decision)


async def decide_remote_unlock(services: Services, door: str, authorization: str) -> Decision:
    """A remote unlock once its body was found acceptable: the one path for
    ``POST /v1/doors/{door}/remote-unlock`` and the fleet hub's forwarded
    request (passbridge.fleet.site_link), so verification, the replay cache
    and the audit record cannot differ between them.

    ``authorization`` is the ``Authorization`` value as received. Raises
    ApiError (401 for the token, 400 for a bad side claim) or UnknownDoor
    (404, only to an authenticated caller) like the route answers them.
    """
    caller = _backend_caller(bearer_value(authorization), services, door=door, path="remote")
    services.core.door(door)  # UnknownDoor -> 404, now that the caller is authenticated
    side = _side(caller.claims.get("side"), "claim side")
    # The backend's verified request is what the core decides on: no re-minting.
    return await services.controller.remote(caller, door, side)


async def nearby_unlock(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return _answer(await decide_nearby(services, request.match_info["door"],
                                       await body_text(request)))


async def decide_nearby(services: Services, door: str, token: str) -> Decision:
    """A phone's signed nearby request for ``door``, verified and decided
    (ApiError 401 for a request no enrolled phone signed, 404 for an unknown
    door once the phone is authenticated). The simulated phones of the
    console's tester panel go through here too (sim/air.py)."""
    found: list[PhoneEnrolment] = []

    def phone_key(credential: str) -> bytes | None:
        # Revoked phones still verify: a signed request from one is attributable
        # and is denied on the record (unknown_credential), not just refused.
        enrolment = services.keystore.phone(credential)
        if enrolment is None:
            return None
        found.append(enrolment)
        return enrolment.public_key

    checked = verify_nearby_request(
        token, phone_key, clock=services.clock, replay_cache=services.request_replay, door=door,
    )
    if isinstance(checked, TokenRejection):
        raise refused(services, "nearby", checked)
    services.core.door(door)  # UnknownDoor -> 404, only now that the phone is authenticated
    if isinstance(checked, RefusedNearbyRequest):
        # Signed by an enrolled phone, so attributable: a recorded denial.
        rejection = checked.rejection
        services.metrics.token_failure("nearby", rejection.reason)
        return await services.controller.bridge_failure(
            door, Side.IN, Factor.NEARBY, rejection.reason, rejection.detail,
            credential=checked.credential,
        )
    enrolment = found[-1]
    if enrolment.revoked:
        return await services.controller.bridge_failure(
            door, Side.IN, Factor.NEARBY, Reason.UNKNOWN_CREDENTIAL, "phone enrolment revoked",
            credential=checked.credential,
        )
    # The side is the side of the door radio that heard the phone, never the request's.
    found_nearby = nearby_evidence(
        services.proximity, services.resolver, services.clock, door=door,
        credential=checked.credential, adv=checked.adv, claimed_side=checked.claimed_side,
    )
    return await services.controller.mobile_factor(
        user=enrolment.user_id, door=door, side=found_nearby.side, factor=Factor.NEARBY,
        credential=checked.credential, evidence=found_nearby.evidence,
    )


async def factor_token(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    token = await body_text(request)
    try:
        return _answer(await services.controller.token(token))
    except UnverifiedToken as unverified:
        # Anybody's bytes: 401 and a counter, never an audit row.
        raise refused(services, "factor", unverified.rejection) from None


def device_caller(request: web.Request, services: Services) -> DeviceKey:
    """The device key the caller presents, or 401 (before anything else is looked at)."""
    key = services.device_keys.authenticate(bearer(request))
    if key is None:
        services.metrics.token_failure("device", Reason.TOKEN_INVALID)
        raise ApiError(401, "bad_device_key", "the device key is not known to this service")
    return key


def require_device(
    services: Services, key: DeviceKey, door: str, side: Side, kind: DeviceKind
) -> None:
    """403 unless ``key`` is the key of that door side's device of that kind.

    The caller is authenticated (a real key), just not this device: 403, not
    401. Checked before the door is looked up, so a key learns nothing about
    which doors exist.
    """
    if key.slot != (door, side, kind):
        services.metrics.token_failure("device", Reason.NO_SUCH_DEVICE)
        log.warning("device key %s (%s %s %s) refused for %r %s %s", key.id, key.door,
                    key.side.value, key.kind.value, door, side.value, kind.value)
        raise ApiError(403, "wrong_device",
                       "this device key is for another door, side or kind of device")


def text_field(data: dict[str, Any], name: str, limit: int, *, digits: bool) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= limit or not value.isascii():
        raise ApiError(400, "malformed_body", f"{name}: expected a string of 1-{limit} characters")
    if digits and not value.isdigit():
        raise ApiError(400, "malformed_body", f"{name}: expected digits")
    if not digits and not value.isprintable():
        raise ApiError(400, "malformed_body", f"{name}: expected printable characters")
    return value


async def _wired_input(request: web.Request, kind: DeviceKind, field: str, limit: int, *,
                       digits: bool) -> tuple[Services, str, str, Side]:
    """What a wired reader or keypad sends: its device key, one field, the side.

    The side defaults to the key's own side; the key must be the one of this
    door side's device of this kind (403 otherwise), and only then is the
    door looked up.
    """
    services = request.app[SERVICES]
    key = device_caller(request, services)
    data = await json_body(request)
    value = text_field(data, field, limit, digits=digits)
    side = _side(data.get("side", key.side.value), "side")
    door = request.match_info["door"]
    require_device(services, key, door, side, kind)
    return services, _door(request, services), value, side


async def card(request: web.Request) -> web.Response:
    services, door, number, side = await _wired_input(
        request, DeviceKind.READER, "number", MAX_CARD_CHARS, digits=False)
    return _answer(await services.controller.card(door, number, side))


async def keypad(request: web.Request) -> web.Response:
    services, door, code, side = await _wired_input(
        request, DeviceKind.KEYPAD, "code", MAX_CODE_CHARS, digits=True)
    return _answer(await services.controller.pin(door, code, side))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/doors/{door}/remote-unlock", remote_unlock)
    app.router.add_post("/v1/doors/{door}/nearby-unlock", nearby_unlock)
    app.router.add_post("/v1/factors", factor_token)
    app.router.add_post("/v1/doors/{door}/card", card)
    app.router.add_post("/v1/doors/{door}/keypad", keypad)
