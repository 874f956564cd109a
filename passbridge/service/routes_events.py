"""``GET /v1/events``: the audit log, paged as JSON or live as server-sent events.

The live feed subscribes before it reads the backlog and then skips what it
has already sent by ``seq``, so no record falls between the page and the
live part. ``Last-Event-ID`` resumes a dropped stream.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from passbridge.service.http import ApiError
from passbridge.service.routes_admin import require_admin
from passbridge.service.runtime import Services
from passbridge.service.state import SERVICES

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
HEARTBEAT_SECONDS = 15.0


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, "bad_query", f"{name}: expected a whole number {low}-{high}")
    value = int(raw)
    if not low <= value <= high:
        raise ApiError(400, "bad_query", f"{name}: expected a whole number {low}-{high}")
    return value


def _wants_stream(request: web.Request) -> bool:
    if request.query.get("stream") in ("1", "true"):
        return True
    return "text/event-stream" in request.headers.get("Accept", "")


async def events(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    require_admin(request, services)
    after = _int_param(request, "after", 0, 0, 2**62)
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    if _wants_stream(request):
        last_id = request.headers.get("Last-Event-ID", "")
        if last_id.isascii() and last_id.isdigit() and len(last_id) <= 18:
            after = max(after, int(last_id))
        return await _stream(request, services, after)
    page = await services.audit.page(after, limit)
    next_after = page[-1]["seq"] if page else after
    return web.json_response({"events": page, "next_after": next_after})


def _frame(event: dict[str, object]) -> bytes:
    data = json.dumps(event, separators=(",", ":"), default=str)
    return f"id: {event['seq']}\nevent: {event['kind']}\ndata: {data}\n\n".encode()


async def _stream(request: web.Request, services: Services, after: int) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    })
    async with services.audit.subscribe() as live:
        await response.prepare(request)
        last = after
        while True:
            page = await services.audit.page(last, MAX_LIMIT)
            for event in page:
                await response.write(_frame(event))
                last = int(event["seq"])
            if len(page) < MAX_LIMIT:
                break
        while True:
            try:
                item = await asyncio.wait_for(live.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if item is None:
                break
            if int(item["seq"]) <= last:
                continue
            await response.write(_frame(item))
            last = int(item["seq"])
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/events", events)
