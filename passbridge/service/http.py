"""The service's HTTP conventions: JSON errors, bearer tokens, small bodies,
and the connection limits every route lives under.

Every error a client sees is ``{"error": {"code", "message"}}``; nothing
raised inside a handler reaches a client as a stack trace. Errors aiohttp
answers before any route runs (a request line or header it cannot parse)
get the same shape from ``edge.EdgeRequestHandler``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from passbridge.errors import ConfigError, PassbridgeError, UnknownDoor

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
# A whole site document (PUT /v1/site, site admins only): a site with thousands
# of users outgrows MAX_BODY_BYTES.
MAX_SITE_BYTES = 4 * 1024 * 1024
# What every response says in its Server header: no library or Python version.
SERVER_HEADER = "passbridge"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "request_too_large",
    415: "unsupported_media_type",
    417: "expectation_failed",
    422: "unprocessable",
}


@dataclass(frozen=True)
class HttpLimits:
    """How long a client may take and how many may be connected at once.

    The defaults (docs/decisions.md, "Connection limits") suit wired devices
    and app backends on a LAN or behind a proxy: a request head or body
    that takes longer than 10 s is an attacker or a broken link, not a
    slow phone. ``passbridge serve`` takes each as a flag.
    """

    # From a request's first byte to the end of its head (request line, headers).
    header_timeout: float = 10.0
    # For the handler to receive the whole body, once the head is in.
    body_timeout: float = 10.0
    # A connection waiting for its next request (after connect or a response).
    idle_timeout: float = 15.0
    # Open client connections; one over the cap is closed as soon as accepted.
    max_connections: int = 4096
    # A live event stream ends after this long (the contract: at most 15 minutes).
    event_stream_seconds: float = 15 * 60.0


LIMITS = web.AppKey("limits", HttpLimits)


class ApiError(PassbridgeError):
    """A request that could not be decided, with the status and code to answer."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    headers = {"WWW-Authenticate": 'Bearer realm="passbridge"'} if status == 401 else None
    return web.json_response({"error": body}, status=status, headers=headers)


def http_exception_response(exc: web.HTTPException) -> web.Response:
    """aiohttp's own 4xx/5xx (404, 405, 413, 417 ...) in the JSON error shape."""
    response = error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def error_answer(exc: Exception) -> tuple[int, dict[str, Any]] | None:
    """The status and JSON error body our own refusals answer (ApiError, an
    unknown door, a bad configuration); None for anything else. The HTTP
    middleware and the fleet link's remote unlock answer alike through it."""
    if isinstance(exc, ApiError):
        status, code, message, extra = exc.status, exc.code, exc.message, exc.extra
    elif isinstance(exc, UnknownDoor):
        status, code, message, extra = 404, "unknown_door", str(exc), {}
    elif isinstance(exc, ConfigError):
        problems = [{"place": p.path, "message": p.message} for p in exc.problems]
        status, code, extra = 422, "invalid_configuration", {"problems": problems}
        message = "; ".join(p.message for p in exc.problems)
    else:
        return None
    return status, {"error": {"code": code, "message": message, **extra}}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (ApiError, UnknownDoor, ConfigError) as exc:
        answer = error_answer(exc)
        assert answer is not None
        status, body = answer
        response = error_response(status, body["error"].pop("code"),
                                  body["error"].pop("message"), **body["error"])
        if status == 408:
            # The rest of a body that stopped arriving is not worth waiting for.
            response.force_close()
        if status == 429 and "retry_after" in body["error"]:
            # Said the standard way too, for clients that know no JSON error.
            response.headers["Retry-After"] = str(body["error"]["retry_after"])
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_exception_response(exc)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:  # logged here, never shown to the client
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; see the service log")


def bearer(request: web.Request) -> str:
    """The bearer credential, or a 401 naming what is missing."""
    return bearer_value(request.headers.get("Authorization", ""))


def bearer_value(header: str) -> str:
    """The credential of an ``Authorization`` value, or a 401 naming what is missing."""
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise ApiError(401, "missing_credentials", "expected Authorization: Bearer <token>")
    return value


async def set_server_header(_request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: replace aiohttp's ``Server: Python/x aiohttp/y``
    so a scanner learns nothing about versions to target."""
    response.headers["Server"] = SERVER_HEADER


async def read_body(request: web.Request, *, limit: int | None = None) -> bytes:
    """The whole body (at most MAX_BODY_BYTES, else 413), within the body
    timeout: a client that drips its body slowly gets 408 and the connection
    is closed, instead of holding a handler for ever.

    ``limit``: another cap for this route (a site document: MAX_SITE_BYTES),
    read only after the route has authenticated its caller.
    """
    limits = request.app[LIMITS]
    reading = request.read() if limit is None else _read_capped(request, limit)
    if request.content.is_eof():
        # The whole body is here already (or there is none, as on most remote
        # unlocks): reading it cannot wait, so there is no timer to arm.
        return await reading
    try:
        async with asyncio.timeout(limits.body_timeout):
            return await reading
    except TimeoutError:
        raise ApiError(408, "request_timeout",
                       f"the request body did not arrive within {limits.body_timeout:g} s"
                       ) from None


async def _read_capped(request: web.Request, limit: int) -> bytes:
    """The body, refused with 413 once it passes ``limit`` bytes (declared or sent)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


async def body_text(request: web.Request) -> str:
    """A token body (compact JWS) as text; JSON ``{"token": ...}`` is accepted too."""
    raw = await read_body(request)
    text = raw.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        data = _parse_json(text)
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str):
            raise ApiError(400, "malformed_body", 'expected a compact JWS or {"token": "<JWS>"}')
        return token.strip()
    if not text:
        raise ApiError(400, "malformed_body", "expected a compact JWS in the body")
    return text


async def json_body(request: web.Request, *, empty_ok: bool = False) -> dict[str, Any]:
    """The body as a JSON object (400 otherwise; over the size limit, 413).

    ``empty_ok``: an empty body (or only whitespace) is the empty object, as
    on remote unlock ("body empty or a JSON object").
    """
    raw = await read_body(request)
    if empty_ok and not raw.strip():
        return {}
    data = _parse_json(raw.decode("utf-8", "replace"))
    if not isinstance(data, dict):
        expected = "an empty body or a JSON object" if empty_ok else "a JSON object"
        raise ApiError(400, "malformed_body", f"expected {expected}")
    return data


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_body", "the body is not valid JSON") from exc
