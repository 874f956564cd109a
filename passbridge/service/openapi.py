"""The OpenAPI 3 document of the HTTP API, served at /v1/openapi.json.

Written by hand next to the routes; a test checks that its paths and
methods are exactly the application's routes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from passbridge.answers import DecisionAnswer
from passbridge.core.model import DoorState
from passbridge.core.policy import OVERRIDE_MINUTES_RANGE

_ERROR = {"$ref": "#/components/schemas/Error"}
_DECISION = {"$ref": "#/components/schemas/Decision"}
_DOOR_PARAM = {
    "name": "door", "in": "path", "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128}, "example": "front",
}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON body of that schema (shared with the hub's document, fleet/hub/openapi.py)."""
    return {"application/json": {"schema": schema}}


_json = json_content

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"},
                       "message": {"type": "string"}}}},
}


def error_responses(descriptions: Mapping[int, str]) -> dict[str, Any]:
    """Responses whose body is the shared ``{"error": {"code", "message"}}``."""
    return {str(s): {"description": text, "content": _json(_ERROR)}
            for s, text in descriptions.items()}


def documented_operations(doc: Mapping[str, Any]) -> set[tuple[str, str]]:
    """``(METHOD, path)`` of every operation a document describes."""
    return {(method.upper(), path) for path, item in doc["paths"].items()
            for method in item if method != "parameters"}


def routed_operations(app: web.Application) -> set[tuple[str, str]]:
    """``(METHOD, path)`` of every route an application serves (HEAD is implied by GET)."""
    return {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.method != "HEAD" and route.resource is not None}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "malformed request", 401: "caller not authenticated",
        403: "not allowed: not a site admin, or a device key of another door, side or kind",
        404: "unknown door", 413: "request too large",
        422: "configuration rejected: every problem placed in error.problems [{place, message}]",
        409: "that radio is real hardware here", 503: "simulated radio failed",
        429: "too many attempts: retry_after seconds in the error",
    }
    return error_responses({s: text[s] for s in statuses})


def _decision_op(summary: str, security: str, body: dict[str, Any] | None,
                 statuses: tuple[int, ...]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{security: []}],
        "responses": {
            "200": {"description": "the decision, any result", "content": _json(_DECISION)},
            **_errors(*statuses),
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    return op


_TOKEN_BODY = {
    "application/jwt": {"schema": {"type": "string", "maxLength": 4096}},
    "application/json": {"schema": {
        "type": "object", "required": ["token"],
        "properties": {"token": {"type": "string", "maxLength": 4096}},
    }},
}
_SIDE = {"type": "string", "enum": ["in", "out"]}


def _remote_unlock_op() -> dict[str, Any]:
    """Remote unlock: the body is optional, and when given a JSON object."""
    op = _decision_op(
        "Remote unlock by the app backend (bearer: backend-signed JWT; header kid "
        "optional, the key is then found by iss). Body: empty or a JSON object.",
        "backendJwt", _json({"type": "object"}), (400, 401, 404, 413),
    )
    op["requestBody"]["required"] = False
    return op


def _admin_op(summary: str, ok: dict[str, Any], statuses: tuple[int, ...],
              body: dict[str, Any] | None = None, params: list[Any] | None = None,
              ) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        # Either credential; with the session cookie a change also needs X-CSRF-Token.
        "security": [{"backendJwt": []}, {"consoleSession": []}],
        "responses": {"200": ok, **_errors(401, 403, *statuses)},
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
    if params:
        op["parameters"] = params
    return op


def _site_paths() -> dict[str, Any]:
    """GET and PUT /v1/site (service/routes_site.py): the revision in force,
    and a live reload with the same checks and swap as SIGHUP."""
    changes = {"type": "object", "properties": {
        k: {"type": "array", "items": {"type": "string"}} for k in ("added", "removed", "changed")}}
    outcome = {
        "type": "object",
        "required": ["site", "old_revision", "new_revision", "changed", "changes", "dropped"],
        "properties": {
            "site": {"type": "string"},
            "old_revision": {"type": "string"},
            "new_revision": {"type": "string"},
            "changed": {"type": "boolean"},
            "source": {"type": "string"},
            "actor": {"type": "string"},
            "seq": {"type": "integer", "nullable": True,
                    "description": "the site_reloaded audit record (null: nothing changed)"},
            "changes": {"type": "object", "properties": {
                "doors": changes, "users": changes,
                "trust": {"type": "object", "properties": {"bridges": changes,
                                                           "backends": changes}},
                "timezone": {"type": "object", "nullable": True}}},
            "dropped": {"type": "object", "description": "runtime state the new site ended "
                        "(pending PIN steps, lockouts, overrides, door lockdowns)"},
        },
    }
    document = {"schema": {"type": "string", "maxLength": 4 * 1024 * 1024}}
    return {
        "get": _admin_op(
            "The site configuration in force: id, revision, doors, and the last reload "
            "(never the document: it holds entry codes)",
            {"description": "the site", "content": _json({
                "type": "object", "required": ["site", "revision"], "properties": {
                    "site": {"type": "string"}, "revision": {"type": "string"},
                    "timezone": {"type": "string"},
                    "doors": {"type": "array", "items": {"type": "string"}},
                    "users": {"type": "integer"},
                    "last_reload": {**outcome, "nullable": True}}})},
            (),
        ),
        "put": {
            **_admin_op(
                "Replace the site configuration while the service runs: the whole "
                "document is validated first (422 error.code invalid_site, every problem "
                "placed; nothing changes), then swapped atomically (decisions name the "
                "revision they used). The site id cannot change",
                {"description": "the reload: old and new revision, what changed",
                 "content": _json(outcome)},
                (400, 413, 422),
            ),
            "requestBody": {"required": True, "content": {
                "application/yaml": document, "application/json": {"schema": {
                    "type": "object"}}}},
        },
    }


class _OpenApi30(GenerateJsonSchema):
    """JSON Schema as OpenAPI 3.0 spells it: ``nullable: true``, not a null type."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        if "enum" in inner:
            return {**inner, "enum": [*inner["enum"], None], "nullable": True}
        return {**inner, "nullable": True}


def decision_schema() -> dict[str, Any]:
    """The ``Decision`` component, from the one model of a decision's JSON.

    Without ``additionalProperties: false``: an answer may carry more (a
    simulated tap adds ``phone_status``), and clients ignore what they do
    not know.
    """
    schema = DecisionAnswer.model_json_schema(schema_generator=_OpenApi30)
    schema.pop("additionalProperties", None)
    return schema


def document(*, simulated: bool = False) -> dict[str, Any]:
    """``simulated``: include the /v1/sim routes a service with simulated radios has."""
    door_schema = {"$ref": "#/components/schemas/Door"}
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "passbridge",
            "version": "1",
            "description": "Door decisions from phones, backends and wired devices; site admin.",
        },
        "paths": {
            "/v1/doors/{door}/remote-unlock": {
                "parameters": [_DOOR_PARAM],
                "post": _remote_unlock_op(),
            },
            "/v1/doors/{door}/nearby-unlock": {
                "parameters": [_DOOR_PARAM],
                "post": _decision_op(
                    "Nearby unlock; the body is a JWS signed by the phone's credential key",
                    "phoneJws", _TOKEN_BODY, (400, 401, 404, 413),
                ),
            },
            "/v1/factors": {
                "post": _decision_op(
                    "A factor token from a trusted bridge (401: no trusted key signed it)",
                    "bridgeToken", _TOKEN_BODY, (400, 401, 404, 413),
                ),
            },
            "/v1/doors/{door}/card": {
                "parameters": [_DOOR_PARAM],
                "post": _decision_op(
                    "A badge read (bearer: device key)", "deviceKey",
                    _json({"type": "object", "required": ["number"], "properties": {
                        "number": {"type": "string", "minLength": 1, "maxLength": 64},
                        "side": _SIDE}}),
                    (400, 401, 403, 404, 413),
                ),
            },
            "/v1/doors/{door}/keypad": {
                "parameters": [_DOOR_PARAM],
                "post": _decision_op(
                    "An entry code (bearer: device key)", "deviceKey",
                    _json({"type": "object", "required": ["code"], "properties": {
                        "code": {"type": "string", "pattern": "^[0-9]{1,32}$"},
                        "side": _SIDE}}),
                    (400, 401, 403, 404, 413),
                ),
            },
            "/v1/doors": {
                "get": _admin_op(
                    "Doors with their state now and what set it",
                    {"description": "doors", "content": _json({
                        "type": "object", "properties": {
                            "doors": {"type": "array", "items": door_schema}}})},
                    (),
                ),
            },
            "/v1/doors/{door}": {
                "parameters": [_DOOR_PARAM],
                "get": _admin_op(
                    "One door's state now and what set it",
                    {"description": "the door", "content": _json(door_schema)}, (404,),
                ),
            },
            "/v1/doors/{door}/override": {
                "parameters": [_DOOR_PARAM],
                "put": _admin_op(
                    "Set ({state, minutes}) or clear ({state: null}) a timed override",
                    {"description": "the door after the change", "content": _json(door_schema)},
                    (400, 404, 413, 422),
                    body={"type": "object", "required": ["state"], "properties": {
                        "state": {"type": "string", "nullable": True,
                                  "enum": [s.value for s in DoorState] + [None]},
                        "minutes": {"type": "integer", "minimum": OVERRIDE_MINUTES_RANGE[0],
                                    "maximum": OVERRIDE_MINUTES_RANGE[1]}}},
                ),
            },
            "/v1/site": _site_paths(),
            "/v1/site/lockdown": {
                "put": _admin_op(
                    "Start or end a lockdown of the site or of one door",
                    {"description": "lockdown now", "content": _json({
                        "type": "object", "properties": {
                            "site": {"type": "boolean"},
                            "doors": {"type": "array", "items": {"type": "string"}}}})},
                    (400, 404, 413),
                    body={"type": "object", "required": ["active"], "properties": {
                        "active": {"type": "boolean"},
                        "door": {"type": "string", "nullable": True}}},
                ),
            },
            "/v1/events": {
                "get": _admin_op(
                    "The audit log, oldest first after a seq; live as text/event-stream "
                    "(Accept header or stream=1). A live stream ends with `event: end` "
                    "(data {\"reason\"}) when the admin token expires, its caller stops "
                    "being a site admin, or after 15 minutes; reconnect with a fresh "
                    "token and Last-Event-ID",
                    {"description": "a page of events (JSON) or a live stream (SSE)",
                     "content": {
                         **_json({"type": "object", "properties": {
                             "events": {"type": "array", "items": {"type": "object"}},
                             "next_after": {"type": "integer"}}}),
                         "text/event-stream": {"schema": {"type": "string"}},
                     }},
                    (400,),
                    params=[
                        {"name": "after", "in": "query",
                         "schema": {"type": "integer", "minimum": 0}},
                        {"name": "limit", "in": "query",
                         "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                        {"name": "stream", "in": "query",
                         "schema": {"type": "string", "enum": ["0", "1"]}},
                    ],
                ),
            },
            "/v1/audit/head": {
                "get": _admin_op(
                    "The newest audit record's seq and chain hash, to anchor the log "
                    "outside (seq 0 and 64 zeros when the log is empty)",
                    {"description": "the head of the audit hash chain", "content": _json({
                        "type": "object", "required": ["seq", "hash"], "properties": {
                            "seq": {"type": "integer", "minimum": 0},
                            "hash": {"type": "string", "nullable": True,
                                     "pattern": "^[0-9a-f]{64}$"}}})},
                    (404,),
                ),
            },
            **_people_paths(),
            "/healthz": {
                "get": {"summary": "Liveness", "responses": {"200": {
                    "description": "up; status 'degraded' with a line per radio under "
                                   "'degraded' while one needs the operator (a held NFC field)",
                    "content": _json({"type": "object"})}}},
            },
            "/metrics": {
                "get": {"summary": "Prometheus metrics", "responses": {"200": {
                    "description": "the classic Prometheus text format; OpenMetrics "
                                   "when Accept asks for application/openmetrics-text",
                    "content": {media: {"schema": {"type": "string"}} for media in (
                        "text/plain", "application/openmetrics-text")}}}},
            },
            "/v1/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": {
                    "description": "OpenAPI 3", "content": _json({"type": "object"})}}},
            },
            **_console_paths(),
        },
        "components": {
            "securitySchemes": {
                "backendJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "deviceKey": {"type": "http", "scheme": "bearer"},
                "phoneJws": {"type": "http", "scheme": "bearer",
                             "description": "informational: the phone's JWS is the body"},
                "bridgeToken": {"type": "http", "scheme": "bearer",
                                "description": "informational: the factor token is the body"},
                "consoleSession": {
                    "type": "apiKey", "in": "cookie", "name": "passbridge_session",
                    "description": "a console session (POST /v1/session). HttpOnly, "
                                   "SameSite=Strict, Secure under TLS; ends after 15 minutes "
                                   "idle, 8 hours after sign-in, on sign-out, or when its user "
                                   "stops being an enabled site admin. Every POST, PUT, PATCH "
                                   "and DELETE made with it needs the header X-CSRF-Token (the "
                                   "session's csrf_token), else 403",
                },
            },
            "schemas": {
                "Error": ERROR_SCHEMA,
                "Decision": decision_schema(),
                "Door": {
                    "type": "object",
                    "required": ["id", "state", "state_source", "override", "lockdown"],
                    "properties": {
                        "id": {"type": "string"},
                        "name": {"type": "string"},
                        "reader": {"type": "boolean"},
                        "keypad": {"type": "boolean"},
                        "in_out": {"type": "boolean"},
                        "strict_two_factor": {"type": "boolean"},
                        "state": {"type": "string", "enum": [s.value for s in DoorState]},
                        "state_source": {"type": "string"},
                        "override": {"type": "object", "nullable": True},
                        "lockdown": {"type": "boolean"},
                        "pending": {"type": "array", "items": {
                            "type": "object", "description": "a card waiting for its "
                            "entry code at one side of the door",
                            "properties": {
                                "side": _SIDE, "user": {"type": "string"},
                                "factor": {"type": "string"},
                                "seconds_left": {"type": "integer", "minimum": 0}}}},
                        "wired_readers": {"type": "array", "items": {
                            "type": "object", "description": "a wired (OSDP) reader of "
                            "this door and whether it answers its polls",
                            "properties": {"side": _SIDE, "online": {"type": "boolean"}}}},
                        "at": {"type": "string", "format": "date-time"},
                    },
                },
            },
        },
    }
    if simulated:
        doc["paths"].update(_simulation_paths())
    return doc


def _console_paths() -> dict[str, Any]:
    """The browser console (service/console): its pages and versioned assets,
    and the QR code it draws for an enrolment code."""
    html = {"text/html": {"schema": {"type": "string"}}}

    def page(summary: str) -> dict[str, Any]:
        return {"get": {"summary": summary, "tags": ["console"], "responses": {
            "200": {"description": "the page (no-cache, ETag)", "content": html},
            "304": {"description": "not modified"}}}}

    return {
        "/console": page("The console (HTML; its data comes from the API with a session)"),
        "/console/sign-in": page("Redeems the sign-in link's #token= for a session"),
        "/console/": {"get": {"summary": "Redirects to /console", "tags": ["console"],
                              "responses": {"301": {"description": "to /console"}}}},
        "/console/assets/{version}/{name}": {
            "parameters": [
                {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "A console file of one release (cached for a year)",
                    "tags": ["console"], "responses": {
                        "200": {"description": "the file", "content": {
                            media: {"schema": {"type": "string"}} for media in (
                                "text/javascript", "text/css")}},
                        "304": {"description": "not modified"},
                        **_errors(404)}}},
        "/console/qr": {"post": {
            "summary": "An SVG QR code of a short text (the console's enrolment codes)",
            "tags": ["console"], "security": [{"backendJwt": []}, {"consoleSession": []}],
            "requestBody": {"required": True, "content": _json({
                "type": "object", "required": ["text"], "properties": {
                    "text": {"type": "string", "minLength": 1, "maxLength": 512}}})},
            "responses": {"200": {"description": "the QR code", "content": {
                "image/svg+xml": {"schema": {"type": "string"}}}},
                **_errors(400, 401, 403, 413)}}},
    }


_SESSION = {"type": "object",
            "required": ["user", "csrf_token", "idle_expires", "absolute_expires"],
            "properties": {"user": {"type": "string"}, "csrf_token": {"type": "string"},
                           "idle_expires": {"type": "string", "format": "date-time"},
                           "absolute_expires": {"type": "string", "format": "date-time"}}}
_USER_PARAM = {"name": "user", "in": "path", "required": True,
               "schema": {"type": "string", "minLength": 1, "maxLength": 64}, "example": "bob"}
_PHONE_PARAM = {"name": "phone", "in": "path", "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                "example": "bob-phone"}


def _people_paths() -> dict[str, Any]:
    """Sign-in links and sessions, phone enrolment and revocation, lockouts."""
    def ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": _json(schema)}

    def open_op(summary: str, body: dict[str, Any] | None, responses: dict[str, Any]
                ) -> dict[str, Any]:
        op: dict[str, Any] = {"summary": summary, "security": [], "responses": responses}
        if body is not None:
            op["requestBody"] = {"required": True, "content": _json(body)}
        return op

    session_op: dict[str, Any] = {"security": [{"consoleSession": []}]}
    return {
        "/v1/console-links": {"post": _admin_op(
            "A single-use console sign-in link (5 minutes) for an enabled site admin; the "
            "token is in the link's fragment, redeemed by POST /v1/session",
            ok("the link", {"type": "object", "required": ["url", "expires"], "properties": {
                "url": {"type": "string"},
                "expires": {"type": "string", "format": "date-time"}}}),
            (400, 413, 422),
            body={"type": "object", "required": ["user"],
                  "properties": {"user": {"type": "string"}}},
        )},
        "/v1/session": {
            "post": open_op(
                "Redeem a sign-in link's token: sets the cookie passbridge_session (HttpOnly, "
                "SameSite=Strict, Path=/, Secure under TLS). 401 link_invalid, link_used or "
                "link_expired; 403 when the link's user is not an enabled site admin",
                {"type": "object", "required": ["token"],
                 "properties": {"token": {"type": "string", "maxLength": 128}}},
                {"200": ok("the session", _SESSION), **_errors(400, 401, 403, 413)}),
            "get": {**session_op, "summary": "The current console session",
                    "responses": {"200": ok("the session", _SESSION), **_errors(401)}},
            "delete": {**session_op,
                       "summary": "Sign out (needs X-CSRF-Token): the session ends and the "
                                  "cookie is cleared",
                       "responses": {"204": {"description": "signed out"},
                                     **_errors(401, 403)}},
        },
        "/v1/users/{user}/enrolments": {"parameters": [_USER_PARAM], "post": _admin_op(
            "A one-time phone enrolment code for a user (10 minutes, single use; the user "
            "must be enabled and have phones listed in the site file)",
            ok("the code, shown once", {
                "type": "object", "required": ["code", "expires"], "properties": {
                    "code": {"type": "string", "example": "7KQ2-M9XD-P4RT-WZ3H"},
                    "expires": {"type": "string", "format": "date-time"},
                    "user": {"type": "string"},
                    "phones": {"type": "array", "items": {"type": "string"}}}}),
            (404, 422),
        )},
        "/v1/enrol": {"post": open_op(
            "A phone app enrols its key with a code (no other credential). The phone id "
            "must be one the site file lists for the code's user. 401 code_invalid, "
            "code_used or code_expired; 409 phone_not_listed or key_in_use; 429 while "
            "too many attempts are made",
            {"type": "object", "required": ["code", "phone", "public_key"], "properties": {
                "code": {"type": "string", "maxLength": 128},
                "phone": {"type": "string", "minLength": 1, "maxLength": 64},
                "public_key": {"type": "string", "description": "base64url of the 65-byte "
                               "uncompressed P-256 point"}}},
            {"200": ok("the enrolment and the reader key to trust", {
                "type": "object", "required": ["phone", "user", "reader_public_key"],
                "properties": {
                    "phone": {"type": "string"}, "user": {"type": "string"},
                    "reader_public_key": {"type": "string", "pattern": "^04[0-9a-f]{128}$",
                                          "description": "hex, as `passbridge keys show`"},
                    "reader_group_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    "reader_sub_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}}),
             **_errors(400, 401, 409, 413, 429)}),
        },
        "/v1/phones/{phone}": {"parameters": [_PHONE_PARAM], "delete": _admin_op(
            "Revoke a phone: its next tap, approach or Nearby request is denied "
            "unknown_credential",
            ok("revoked", {"type": "object", "properties": {
                "phone": {"type": "string"}, "user": {"type": "string"},
                "revoked": {"type": "boolean"}}}),
            (404,),
        )},
        "/v1/lockouts": {"get": _admin_op(
            "Lockouts in force: users locked out of two-factor entry at a door, keypads "
            "locked for PIN-only entry; each with when it ends",
            ok("lockouts now", {"type": "object", "properties": {
                "users": {"type": "array", "items": {"type": "object", "properties": {
                    "user": {"type": "string"}, "door": {"type": "string"},
                    "until": {"type": "string", "format": "date-time"},
                    "seconds_left": {"type": "number"}, "lockouts": {"type": "integer"}}}},
                "keypads": {"type": "array", "items": {"type": "object", "properties": {
                    "door": {"type": "string"}, "side": _SIDE,
                    "until": {"type": "string", "format": "date-time"},
                    "seconds_left": {"type": "number"}, "lockouts": {"type": "integer"}}}},
                "at": {"type": "string", "format": "date-time"}}}),
            (),
        )},
        "/v1/doors/{door}/lockouts/{user}": {
            "parameters": [_DOOR_PARAM, _USER_PARAM],
            "delete": _admin_op(
                "Lift a user's two-factor lockout at a door (recorded with who lifted it)",
                ok("cleared", {"type": "object", "properties": {
                    "door": {"type": "string"}, "user": {"type": "string"},
                    "cleared": {"type": "boolean"}}}),
                (404,),
            ),
        },
    }


def _simulation_paths() -> dict[str, Any]:
    rssi = {"type": "integer", "minimum": -127, "maximum": 20, "nullable": True}
    phone_body = {"type": "object", "required": ["phone"], "properties": {
        "phone": {"type": "string"}, "side": _SIDE, "rssi": rssi}}
    decision = {"description": "the decision", "content": _json(
        {"$ref": "#/components/schemas/Decision"})}

    def op(summary: str, ok: dict[str, Any], body: dict[str, Any] | None) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "summary": summary, "tags": ["simulation"],
            # The door side's reader key, or a site admin's console session (tester panel).
            "security": [{"deviceKey": []}, {"consoleSession": []}],
            "responses": {"200": ok, **_errors(400, 401, 403, 404, 409, 413, 503)},
        }
        if body is not None:
            operation["requestBody"] = {"required": True, "content": _json(body)}
        return operation

    return {
        "/v1/sim": {"get": {"summary": "The simulated radios: phones, reader public key, "
                                       "door sides with a simulated OSDP reader (wired)",
                            "tags": ["simulation"],
                            "security": [{"deviceKey": []}, {"consoleSession": []}],
                            "responses": {"200": {
                                "description": "simulation", "content": _json(
                                    {"type": "object"})}, **_errors(401)}}},
        "/v1/sim/doors/{door}/nfc": {"parameters": [_DOOR_PARAM], "post": op(
            "A simulated phone taps the door's NFC reader", decision, phone_body)},
        "/v1/sim/doors/{door}/ble": {"parameters": [_DOOR_PARAM], "post": op(
            "A simulated phone makes a Bluetooth unlock", decision, phone_body)},
        "/v1/sim/doors/{door}/nearby": {"parameters": [_DOOR_PARAM], "post": op(
            "A simulated phone advertises near the door side's radio (rssi null: not "
            "seen), then asks for a Nearby unlock signed with its own key", decision,
            phone_body)},
        "/v1/sim/doors/{door}/card": {"parameters": [_DOOR_PARAM], "post": op(
            "A badge at the door side's reader", decision,
            {"type": "object", "required": ["number"], "properties": {
                "number": {"type": "string", "minLength": 1, "maxLength": 64}, "side": _SIDE}})},
        "/v1/sim/doors/{door}/keypad": {"parameters": [_DOOR_PARAM], "post": op(
            "An entry code on the door side's keypad", decision,
            {"type": "object", "required": ["code"], "properties": {
                "code": {"type": "string", "pattern": "^[0-9]{1,32}$"}, "side": _SIDE}})},
        "/v1/sim/scenario": {"post": {
            "summary": "Run an uploaded scenario file in its own in-memory rig (the "
                       "scenario's site, never this service's doors); the per-step report",
            "tags": ["simulation"], "security": [{"deviceKey": []}, {"consoleSession": []}],
            "requestBody": {"required": True, "content": {
                "application/yaml": {"schema": {"type": "string"}}}},
            "responses": {"200": {"description": "the report", "content": _json({
                "type": "object", "properties": {
                    "name": {"type": "string"}, "passed": {"type": "boolean"},
                    "steps": {"type": "array", "items": {"type": "object"}}}})},
                **_errors(401, 403, 409, 413, 422, 503)}}},
        "/v1/sim/phones/{phone}/advertise": {
            "parameters": [{"name": "phone", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "post": op("The phone advertises its rotating id near one door radio "
                       "(rssi null: not seen)",
                       {"description": "the advertised id", "content": _json(
                           {"type": "object", "properties": {"adv": {"type": "string"}}})},
                       {"type": "object", "properties": {
                           "rssi": rssi, "door": {"type": "string"}, "side": _SIDE}}),
        },
    }
