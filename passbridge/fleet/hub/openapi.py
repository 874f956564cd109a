"""The OpenAPI 3 document of the hub's HTTP API, served at /v1/openapi.json.

Written by hand next to the routes of fleet/hub/app.py, with the site
document's helpers (service/openapi.py: the JSON body, the shared error
body, the ``Decision`` schema); a test checks that its paths and methods
are exactly the hub application's routes, so a route added without
documentation fails it.
"""

from __future__ import annotations

from typing import Any

from passbridge.fleet import wire
from passbridge.service.openapi import (
    ERROR_SCHEMA,
    decision_schema,
    error_responses,
    json_content,
)

_OPERATOR: list[dict[str, list[str]]] = [{"operatorJwt": []}]
_STRING = {"type": "string"}
_INT = {"type": "integer"}
_TIME = {"type": "string", "format": "date-time"}


def _path(name: str, example: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1}, "example": example}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


_SITE = _path("site", "hq")
_DOOR = _path("door", "front")
_PHONE = _path("phone", "bob-phone")
_AFTER = _query("after", {"type": "integer", "minimum": 0},
                "the ``next`` of the previous page (0: from the start)")
_LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                "at most this many")

_OPERATOR_ERRORS = {
    401: "no, bad, expired or replayed operator token (aud passbridge-hub, life <= 60 s, "
         "single-use jti)",
    403: "the token's role is not fleet_operator",
}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": json_content(schema)}


def _operator_op(summary: str, ok: dict[str, Any], errors: dict[int, str],
                 *, params: list[dict[str, Any]] | None = None,
                 body: dict[str, Any] | None = None) -> dict[str, Any]:
    """An operator route: the bearer is an operator JWT; errors share one body."""
    op: dict[str, Any] = {
        "summary": summary, "security": _OPERATOR,
        "responses": {"200": ok, **error_responses({**_OPERATOR_ERRORS, **errors})},
    }
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    return op


def _remote_unlock() -> dict[str, Any]:
    """Passed through: the backend's bearer and body go to the site as received,
    and the site's answer (its decision, or its own error) comes back as is."""
    return {
        "summary": "Remote unlock at a site's door, for app backends. The Authorization "
                   "header (the backend-signed JWT the site verifies, exactly as for the "
                   "site's own POST /v1/doors/{door}/remote-unlock) and the body are handed "
                   "to the site over NATS; its answer comes back unchanged. The hub decides "
                   "nothing and checks no token",
        "security": [{"backendJwt": []}],
        "requestBody": {"required": False, "content": json_content({"type": "object"})},
        "responses": {
            "200": _ok("the site's decision, any result", {"$ref": "#/components/schemas/"
                                                                   "Decision"}),
            **error_responses({
                400: "malformed body (here), or the site's own 400",
                401: "the site refused the backend token (the site's answer, passed through)",
                404: "the site has no such door (the site's answer)",
                413: "request too large",
                502: "bad_site_reply: the site answered outside the fleet contract",
                503: "site_offline (no subscriber for the site: nothing was decided) or "
                     "fleet_unavailable (the hub is not connected to NATS)",
                504: f"site_timeout: no answer within {wire.REMOTE_UNLOCK_TIMEOUT_S:g} s "
                     "(default); the site may still have decided, its audit will say",
            }),
        },
    }


def _published() -> dict[str, Any]:
    return _ok("the signed statement put in the site's bucket", {
        "type": "object", "required": ["site", "seq", "key", "typ"], "properties": {
            "site": _STRING, "seq": {"type": "integer", "minimum": 1},
            "key": _STRING, "typ": _STRING}})


_PUBLISH_ERRORS = {
    400: "malformed body",
    413: "request too large",
    422: "unprocessable: the field is in error.field",
}


def _sites() -> dict[str, Any]:
    nullable_int = {"type": "integer", "nullable": True}
    site = {"type": "object", "required": ["site", "online"], "properties": {
        "site": _STRING, "online": {"type": "boolean"},
        "last_heard": {**_TIME, "nullable": True},
        "link_lag_seconds": {"type": "number", "nullable": True},
        "revision": {"type": "string", "nullable": True},
        "last_seq": nullable_int, "acked_seq": nullable_int, "audit_backlog": nullable_int,
        "hub_records": _INT, "hub_verified_seq": _INT, "open_alerts": _INT}}
    return _operator_op(
        "Every site the hub knows: online from its status heartbeats, audit backlog, "
        "what the hub stored and verified, open alerts ('database' says when PostgreSQL "
        "is away and the view is the heartbeats only)",
        _ok("the fleet", {"type": "object", "required": ["sites"], "properties": {
            "sites": {"type": "array", "items": site}, "database": _STRING}}),
        {},
    )


def _audit() -> dict[str, Any]:
    record = {"type": "object", "required": ["id", "site", "hash", "chain", "received_at"],
              "description": "a site's audit record with its columns, as the site wrote it",
              "properties": {"id": _INT, "site": _STRING, "hash": _STRING, "chain": _STRING,
                             "received_at": _TIME}}
    filters = [_query(name, _STRING, f"only records with this {name}")
               for name in ("site", "door", "user", "result", "kind")]
    return _operator_op(
        "The fleet's audit records in arrival order, filtered; page with after=next",
        _ok("a page of records", {"type": "object", "required": ["records", "next"],
                                  "properties": {
                                      "records": {"type": "array", "items": record},
                                      "next": {"type": "integer", "nullable": True,
                                               "description": "after= of the next page; "
                                                              "null at the end"}}}),
        {400: "bad_query: a query parameter out of range"},
        params=[*filters, _AFTER, _LIMIT],
    )


def _alerts() -> dict[str, Any]:
    alert = {"type": "object", "required": ["id", "site", "kind", "detail", "raised_at"],
             "properties": {"id": _INT, "site": _STRING, "kind": _STRING,
                            "seq": {"type": "integer", "nullable": True},
                            "seq_to": {"type": "integer", "nullable": True},
                            "detail": _STRING, "raised_at": _TIME,
                            "resolved_at": {**_TIME, "nullable": True},
                            "resolution": {"type": "string", "nullable": True}}}
    return _operator_op(
        "Audit alerts (gaps, broken chains, ...) raised while ingesting",
        _ok("alerts", {"type": "object", "required": ["alerts"], "properties": {
            "alerts": {"type": "array", "items": alert}}}),
        {400: "bad_query: a query parameter out of range"},
        params=[_query("site", _STRING, "only this site's alerts"),
                _query("open", {"type": "string", "enum": ["0", "1", "true", "false"]},
                       "1 or true: only alerts not resolved"),
                _AFTER, _LIMIT],
    )


def document() -> dict[str, Any]:
    text = {"schema": {"type": "string"}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "passbridge hub",
            "version": "1",
            "description": "The fleet hub: remote unlock forwarded to sites, the fleet view "
                           "and audit, signed documents and phones published to sites.",
        },
        "paths": {
            "/v1/sites/{site}/doors/{door}/remote-unlock": {
                "parameters": [_SITE, _DOOR], "post": _remote_unlock()},
            "/v1/sites": {"get": _sites()},
            "/v1/audit": {"get": _audit()},
            "/v1/alerts": {"get": _alerts()},
            "/v1/sites/{site}/document": {"parameters": [_SITE], "put": _operator_op(
                "Publish a site document (YAML or JSON text, or {\"document\": text}) to "
                "the site's bucket, signed; the site validates it as a local reload",
                _published(), _PUBLISH_ERRORS,
                body={"required": True, "content": {
                    "application/yaml": text, "text/plain": text,
                    **json_content({"type": "object", "properties": {
                        "document": _STRING}})}})},
            "/v1/sites/{site}/phones/{phone}": {
                "parameters": [_SITE, _PHONE],
                "post": _operator_op(
                    "Enrol a phone's key for a user at the site (a signed statement)",
                    _published(), _PUBLISH_ERRORS,
                    body={"required": True, "content": json_content({
                        "type": "object", "required": ["user", "public_key"], "properties": {
                            "user": {"type": "string", "minLength": 1},
                            "public_key": {"type": "string", "description":
                                           "base64url of the 65-byte uncompressed P-256 "
                                           "point"}}})}),
                "delete": _operator_op(
                    "Revoke a phone at the site (a signed statement); the user defaults "
                    "to that of the phone's last enrolment published here",
                    _published(), _PUBLISH_ERRORS,
                    params=[_query("user", _STRING, "the phone's user")],
                    body={"required": False, "content": json_content({
                        "type": "object", "properties": {"user": _STRING}})}),
            },
            "/healthz": {"get": {"summary": "Liveness and the NATS link", "responses": {
                "200": _ok("status ok, or degraded while NATS is disconnected", {
                    "type": "object", "properties": {
                        "status": {"type": "string", "enum": ["ok", "degraded"]},
                        "nats": {"type": "string", "enum": ["connected", "disconnected"]},
                        "uptime_seconds": {"type": "number"},
                        "sites_online": _INT}})}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
                "description": "the classic Prometheus text format; OpenMetrics when "
                               "Accept asks for application/openmetrics-text",
                "content": {media: text for media in (
                    "text/plain", "application/openmetrics-text")}}}}},
            "/v1/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": _ok("OpenAPI 3", {"type": "object"})}}},
        },
        "components": {
            "securitySchemes": {
                "operatorJwt": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "signed by an operator key the hub trusts "
                                   "(--operator-key ID=FILE; iss = that ID), aud "
                                   "passbridge-hub, role fleet_operator, life <= 60 s, "
                                   "single-use jti"},
                "backendJwt": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "the app backend's JWT for the site; the hub passes it "
                                   "through unread and the site verifies it"},
            },
            "schemas": {"Error": ERROR_SCHEMA, "Decision": decision_schema()},
        },
    }
