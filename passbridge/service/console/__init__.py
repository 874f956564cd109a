"""The browser console at ``/console``: static pages and ES modules served by
the service itself (no build step, no other web server), plus the one
server-side helper the pages need (a QR code for an enrolment code).

Caching: every asset lives under ``/console/assets/<version>/``, where the
version is a hash of all the assets together, so an asset is cached for a
year and a new release is a new URL; the two HTML pages are revalidated on
every load (``no-cache`` with an ETag), and relative ``import`` paths inside
the modules stay within one version. Every console response carries a
Content-Security-Policy of ``default-src 'self'`` with no inline script or
style, and is never framed.

The pages hold no data and need no session; everything they show comes from
the API with the session cookie (``/v1/session``).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from importlib import resources

from aiohttp import hdrs, web

from passbridge.service.console.reasons import words
from passbridge.service.http import ApiError, json_body
from passbridge.service.routes_admin import require_admin
from passbridge.service.state import SERVICES

ASSET_PREFIX = "/console/assets"
# One place for the headers every console response carries.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
        "object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # A sign-in link's token is in the fragment, never sent; this keeps the
    # console's own paths out of any other site's logs too.
    "Referrer-Policy": "no-referrer",
}
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}
PAGES = {"/console": "index.html", "/console/sign-in": "sign-in.html"}
# The longest text the QR route encodes: an enrolment link, with room to spare.
MAX_QR_CHARS = 512


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True)
class ConsoleAssets:
    """Every file of the console, read once at start-up; ``version`` names them all."""

    version: str
    assets: dict[str, Asset]
    pages: dict[str, Asset]


def _asset(body: bytes, name: str) -> Asset:
    suffix = name[name.rfind("."):]
    return Asset(body, _TYPES[suffix], '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


def load_assets() -> ConsoleAssets:
    """The package's assets plus ``words.js``, made from ``reasons.words()``."""
    folder = resources.files(__package__).joinpath("assets")
    files = {entry.name: entry.read_bytes() for entry in folder.iterdir()
             if entry.is_file() and entry.name[entry.name.rfind("."):] in _TYPES}
    files["words.js"] = (
        "// Made by the service from passbridge/service/console/reasons.py: edit it there.\n"
        f"export const WORDS = {json.dumps(words(), indent=1, sort_keys=True)};\n"
    ).encode()
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    version = digest.hexdigest()[:12]
    pages: dict[str, Asset] = {}
    for path, name in PAGES.items():
        html = files.pop(name).replace(b"{{assets}}", f"{ASSET_PREFIX}/{version}".encode())
        pages[path] = _asset(html, name)
    return ConsoleAssets(version, {n: _asset(b, n) for n, b in files.items()}, pages)


CONSOLE = web.AppKey("console", ConsoleAssets)


def _send(request: web.Request, asset: Asset, cache: str) -> web.Response:
    headers = {**SECURITY_HEADERS, hdrs.CACHE_CONTROL: cache, hdrs.ETAG: asset.etag}
    if asset.etag in request.headers.get(hdrs.IF_NONE_MATCH, ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers,
                                                  hdrs.CONTENT_TYPE: asset.content_type})


async def page(request: web.Request) -> web.Response:
    asset = request.app[CONSOLE].pages[request.path]
    return _send(request, asset, "no-cache")


async def console_slash(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently("/console")


async def asset(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    found = console.assets.get(request.match_info["name"])
    if request.match_info["version"] != console.version or found is None:
        # An old page asking for an old release's file: reloading the page fixes it.
        raise ApiError(404, "not_found", "no such console file in this release; reload the page")
    return _send(request, found, "public, max-age=31536000, immutable")


async def qr_code(request: web.Request) -> web.Response:
    """An SVG QR code of ``text`` (an enrolment code), drawn by ``segno``.
    Site admins only: the console shows it beside the code."""
    require_admin(request, request.app[SERVICES])
    data = await json_body(request)
    text = data.get("text")
    if not isinstance(text, str) or not 0 < len(text) <= MAX_QR_CHARS or not text.isprintable():
        raise ApiError(400, "malformed_body",
                       f"text: expected 1-{MAX_QR_CHARS} printable characters")
    import segno  # only here: nothing else draws QR codes

    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="svg", scale=6, border=4, xmldecl=False,
                                     svgclass="qr", title="QR code of the enrolment code")
    return web.Response(body=out.getvalue(), headers={
        **SECURITY_HEADERS, hdrs.CONTENT_TYPE: "image/svg+xml", hdrs.CACHE_CONTROL: "no-store",
    })


def add_routes(app: web.Application) -> None:
    app[CONSOLE] = load_assets()
    for path in PAGES:
        app.router.add_get(path, page)
    app.router.add_get("/console/", console_slash)
    app.router.add_get(ASSET_PREFIX + "/{version}/{name}", asset)
    app.router.add_post("/console/qr", qr_code)
