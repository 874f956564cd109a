"""``GET /v1/events``: the audit log, paged as JSON or live as server-sent events;
``GET /v1/audit/head``: the newest record and its chain hash.

The live feed subscribes before it reads the backlog and then skips what it
has already sent by ``seq``, so no record falls between the page and the
live part. ``Last-Event-ID`` resumes a dropped stream.

A live stream is only as good as the credential that opened it: it ends
when the admin token's ``exp`` passes (a console session: its absolute
expiry, or sign-out), when its caller is no longer an enabled site
admin, and after at most ``HttpLimits.event_stream_seconds`` (15
minutes), with a last ``event: end`` naming why. The client reconnects
with a fresh token and ``Last-Event-ID`` and misses nothing.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from passbridge.service.events import Event
from passbridge.service.http import LIMITS, ApiError
from passbridge.service.routes_admin import AdminCaller, authenticate_admin, is_site_admin
from passbridge.service.runtime import Services
from passbridge.service.sessions import SESSIONS
from passbridge.service.state import SERVICES

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
HEARTBEAT_SECONDS = 15.0
# Live records committed within this long of a stream's last write wait and
# go out together (Nagle for consoles): a person cannot tell 50 ms, the doors
# can tell twenty writes per decision.
MIN_WRITE_INTERVAL = 0.05
# How long past its end a stream's last writes may take before the reader is
# dropped as not reading.
END_GRACE_SECONDS = 5.0


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


async def audit_head(request: web.Request) -> web.Response:
    """The newest audit record's ``seq`` and chain hash, for an outside
    system to keep: once copied elsewhere, it pins down every record before
    it (adapters.audit_chain). Site admins only, like the log itself."""
    services = request.app[SERVICES]
    authenticate_admin(request, services)
    head = await services.audit.head()
    if head is None:
        raise ApiError(404, "not_found", "this service keeps no durable audit log")
    return web.json_response(head.to_json())


async def events(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    caller = authenticate_admin(request, services)
    after = _int_param(request, "after", 0, 0, 2**62)
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    if _wants_stream(request):
        last_id = request.headers.get("Last-Event-ID", "")
        if last_id.isascii() and last_id.isdigit() and len(last_id) <= 18:
            after = max(after, int(last_id))
        return await _stream(request, services, after, caller)
    page = await services.audit.page(after, limit)
    next_after = page[-1]["seq"] if page else after
    return web.json_response({"events": page, "next_after": next_after})


# Frames of the latest live events by the event object's id, each kept with
# its event (so the id stays that event's): a record published to twenty
# streams is encoded once, not twenty times. Bounded; a miss only re-encodes.
_FRAMES: dict[int, tuple[Event, bytes]] = {}
_FRAMES_KEPT = 256


def _frame(event: Event) -> bytes:
    kept = _FRAMES.get(id(event))
    if kept is not None and kept[0] is event:
        return kept[1]
    data = json.dumps(event, separators=(",", ":"), default=str)
    frame = f"id: {event['seq']}\nevent: {event['kind']}\ndata: {data}\n\n".encode()
    _FRAMES[id(event)] = (event, frame)
    if len(_FRAMES) > _FRAMES_KEPT:
        del _FRAMES[next(iter(_FRAMES))]
    return frame


def _end_frame(reason: str) -> bytes:
    """The stream's last event. It has no ``id``, so the client's
    ``Last-Event-ID`` stays the last audit record it received."""
    return f"event: end\ndata: {json.dumps({'reason': reason})}\n\n".encode()


async def _stream(
    request: web.Request, services: Services, after: int, caller: AdminCaller
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    most = request.app[LIMITS].event_stream_seconds
    # The token's remaining life by the service clock, waited out on the loop's.
    token_left = (caller.expires_at - services.clock.now()).total_seconds()
    ends_at = loop.time() + max(0.0, min(token_left, most))
    deadline_reason = "credentials_expired" if token_left <= most else "max_duration"

    sessions = request.app[SESSIONS]

    def ended() -> str | None:
        if services.clock.now() >= caller.expires_at:
            return "credentials_expired"
        if not is_site_admin(services, caller.user):
            return "not_site_admin"
        if caller.session is not None:
            # A console watching the stream is in use: it keeps the session
            # from idling out (the absolute expiry still ends it).
            if not sessions.alive(caller.session):
                return "signed_out"
            sessions.touch(caller.session)
        if loop.time() >= ends_at:
            return deadline_reason
        return None

    async def send(data: bytes) -> None:
        """One write, given up with the connection if the reader has not taken
        it by the stream's end (plus a grace): a client that stops reading
        cannot hold a stream open past its bounds."""
        try:
            async with asyncio.timeout_at(ends_at + END_GRACE_SECONDS):
                await response.write(data)
        except TimeoutError:
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("the event stream's reader stopped reading") from None

    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    })
    async with services.audit.subscribe() as live:
        await response.prepare(request)
        last = after
        reason = ended()
        while reason is None:  # the backlog, a page at a time
            page = await services.audit.page(last, MAX_LIMIT)
            for event in page:
                await send(_frame(event))
                last = int(event["seq"])
            if len(page) < MAX_LIMIT:
                break
            reason = ended()
        written = float("-inf")  # when live records were last written
        while reason is None:  # then live records as they are committed
            wait = max(0.0, min(HEARTBEAT_SECONDS, ends_at - loop.time()))
            batch: list[Event | None] = []
            try:
                async with asyncio.timeout(wait):
                    batch.append(await live.get())
            except TimeoutError:
                pass
            if batch and loop.time() < written + MIN_WRITE_INTERVAL:
                # A busy door site: what comes within the interval goes in one
                # write, so twenty consoles cost the doors twenty writes per
                # interval, not twenty per decision; a quiet one is not delayed.
                await asyncio.sleep(written + MIN_WRITE_INTERVAL - loop.time())
            # Checked before anything is sent: a caller who lost the right
            # while waiting gets no record committed after that.
            reason = ended()
            if reason is not None:
                break
            if not batch:
                await send(b": keep-alive\n\n")
                continue
            # What else is queued already goes in the same write: a group
            # commit publishes several records at once, and twenty streams
            # then wake and write once each, not once per record.
            while batch[-1] is not None and not live.empty():
                batch.append(live.get_nowait())
            frames = []
            for item in batch:
                if item is None:
                    reason = "feed_closed"  # the service is stopping, or this reader fell behind
                elif int(item["seq"]) > last:
                    frames.append(_frame(item))
                    last = int(item["seq"])
            if frames:
                await send(b"".join(frames))
                written = loop.time()
    await send(_end_frame(reason))
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/events", events)
    app.router.add_get("/v1/audit/head", audit_head)
