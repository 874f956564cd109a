"""``/v1/site``: the configuration in force, and replacing it (site admins).

``PUT /v1/site`` takes a whole site document (YAML or JSON: YAML reads
JSON too) and hands it to ``site_reload.reload_site``, the same path as
SIGHUP and the fleet: 200 with what changed, or 422 with every problem
placed. ``GET /v1/site`` says which revision is in force and what the last
reload did. It never returns the document itself: a site file holds entry
codes in clear (docs/decisions.md "Live site reload").
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from passbridge.errors import ConfigError
from passbridge.service.http import MAX_SITE_BYTES, error_response, read_body
from passbridge.service.routes_admin import require_admin
from passbridge.service.runtime import Services
from passbridge.service.site_reload import reload_site
from passbridge.service.state import SERVICES

# Where problems of a PUT document are placed (their "file").
PUT_ORIGIN = "PUT /v1/site"


def site_json(services: Services) -> dict[str, Any]:
    site = services.site
    last = services.reloads.last
    return {
        "site": site.id,
        "revision": site.revision,
        "timezone": site.timezone.key,
        "doors": list(site.doors),
        "users": len(site.users),
        "last_reload": None if last is None else last.to_json(),
    }


async def get_site(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    require_admin(request, services)
    return web.json_response(site_json(services))


async def put_site(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    actor = require_admin(request, services)  # before the body is even read
    body = await read_body(request, limit=MAX_SITE_BYTES)
    try:
        outcome = await reload_site(services, body, source="api", actor=actor,
                                    origin=PUT_ORIGIN)
    except ConfigError as exc:
        problems = [{"place": p.path, "message": p.message} for p in exc.problems]
        return error_response(
            422, "invalid_site",
            f"the site document was refused ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}); the running site is unchanged",
            problems=problems,
        )
    return web.json_response(outcome.to_json())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/site", get_site)
    app.router.add_put("/v1/site", put_site)
