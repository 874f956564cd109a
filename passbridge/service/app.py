"""One aiohttp application around a Services, wherever the Services came from.

Lifetimes, in order: the audit store is entered first and closed last; the
radios start after it and stop before it. On shutdown aiohttp stops
accepting, lets in-flight handlers finish (each awaits its own durable
audit record), ends live event feeds, and only then runs the cleanups, so
no answered decision is lost.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp import hdrs, web

from passbridge.service import (
    console,
    routes_admin,
    routes_decisions,
    routes_events,
    routes_phones,
    routes_sessions,
    routes_site,
)
from passbridge.service.http import (
    LIMITS,
    MAX_BODY_BYTES,
    HttpLimits,
    json_errors,
    set_server_header,
)
from passbridge.service.metrics import METRICS_REGISTRY, app_registry, exposition
from passbridge.service.openapi import document
from passbridge.service.runtime import Radio, Services
from passbridge.service.sessions import SESSIONS, SessionStore
from passbridge.service.state import SERVICES


class SimulatedRoutes(Radio, Protocol):
    """Simulated radios that bring their own /v1/sim routes
    (``passbridge.sim.air.SimulatedAir``, made by ``serve --simulate``).

    A protocol, so that the service never imports a simulator: they load
    bumble and nfcpy's udp driver, about half of serve's start-up time, and
    a plain ``serve`` runs none.
    """

    def add_routes(self, app: web.Application) -> None: ...


# Whether this app has the /v1/sim routes (the OpenAPI document says so).
SIMULATED = web.AppKey("simulated", bool)


async def healthz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    degraded = services.degraded()
    body: dict[str, object] = {
        "status": "degraded" if degraded else "ok",
        "site": services.site.id,
        "revision": services.site.revision,
        "uptime_seconds": round(time.monotonic() - services.started, 3),
    }
    if degraded:
        # Still 200: the service answers; a held reader is for the operator, not a restart.
        body["degraded"] = degraded
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    body, content_type = exposition(request.app[METRICS_REGISTRY],
                                    request.headers.get(hdrs.ACCEPT, ""))
    # Vary: a cache between scraper and service must not hand one format to
    # a scraper that asked for the other.
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type,
                                            hdrs.VARY: hdrs.ACCEPT,
                                            "X-Content-Type-Options": "nosniff"})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document(simulated=request.app[SIMULATED]))


async def _audit_lifetime(app: web.Application) -> AsyncIterator[None]:
    yield
    services = app[SERVICES]
    if services.close_audit:
        await services.audit.store.close()


async def _radios_lifetime(app: web.Application) -> AsyncIterator[None]:
    started = []
    try:
        for radio in app[SERVICES].radios:
            await radio.start()
            started.append(radio)
        yield
    finally:
        for radio in reversed(started):
            await radio.stop()


async def _end_live_feeds(app: web.Application) -> None:
    app[SERVICES].audit.end_feeds()


def create_app(
    services: Services, *, simulated: SimulatedRoutes | None = None,
    limits: HttpLimits | None = None,
) -> web.Application:
    """``simulated``: the service's simulated radios, which add /v1/sim routes
    (never present when the radios are real hardware). ``limits``: the body
    timeout and event-stream length the routes use (``serve`` flags; the
    connection-level limits are edge.EdgeSite's)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[json_errors])
    app[SERVICES] = services
    app[METRICS_REGISTRY] = app_registry(services.metrics)
    app[LIMITS] = limits if limits is not None else HttpLimits()
    app[SIMULATED] = simulated is not None
    # Console sessions live as long as this app (a restart signs everybody out).
    app[SESSIONS] = SessionStore(services.clock)
    app.on_response_prepare.append(set_server_header)
    app.cleanup_ctx.append(_audit_lifetime)
    app.cleanup_ctx.append(_radios_lifetime)
    app.on_shutdown.append(_end_live_feeds)
    routes_decisions.add_routes(app)
    routes_admin.add_routes(app)
    routes_events.add_routes(app)
    console.add_routes(app)
    routes_site.add_routes(app)
    routes_sessions.add_routes(app)
    routes_phones.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/openapi.json", openapi)
    if simulated is not None:
        if simulated not in services.radios:
            services.radios.append(simulated)
        simulated.add_routes(app)
    return app
