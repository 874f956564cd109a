"""The application key the routes find their Services under."""

from __future__ import annotations

from aiohttp import web

from passbridge.service.runtime import Services

SERVICES = web.AppKey("services", Services)
