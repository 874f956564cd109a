"""Every site-admin route of the OpenAPI document, attacked the same ways:
no credentials, a token without the role, a token for a user the site file
does not make an admin, an expired token, a replayed token, a session
cookie from another service, and a session's change without its CSRF
token. None may succeed; a route added later is swept in by the document."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from passbridge.service.app import create_app
from passbridge.service.openapi import document
from passbridge.service.sessions import COOKIE
from tests.service_support import Client, Rig, admin_token, backend_token, make_rig, sign_in

PATH_VALUES = {"door": "front", "user": "bob", "phone": "bob-phone"}
ADMIN_SECURITY = [{"backendJwt": []}, {"consoleSession": []}]


def admin_operations() -> list[tuple[str, str]]:
    found = []
    for path, item in document(simulated=False)["paths"].items():
        for method, op in item.items():
            if method != "parameters" and op.get("security") == ADMIN_SECURITY:
                found.append((method.upper(), path.format(**PATH_VALUES)))
    return sorted(found)


OPERATIONS = admin_operations()


def test_the_sweep_sees_the_admin_routes() -> None:
    for expected in (("GET", "/v1/doors"), ("PUT", "/v1/site/lockdown"),
                     ("POST", "/v1/console-links"), ("POST", "/v1/users/bob/enrolments"),
                     ("DELETE", "/v1/phones/bob-phone"), ("GET", "/v1/lockouts"),
                     ("DELETE", "/v1/doors/front/lockouts/bob"), ("PUT", "/v1/site")):
        assert expected in OPERATIONS



async def send(client: Client, method: str, path: str, **kwargs: Any) -> tuple[int, str]:
    body = None if method in ("GET", "DELETE") else {}
    resp = await client.request(method, path, json=body, **kwargs)
    data = await resp.json() if resp.content_type == "application/json" else {}
    return resp.status, str(data.get("error", {}).get("code", ""))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
async def test_tokens_that_are_not_a_site_admins_are_refused(
    rig: tuple[Rig, Client], method: str, path: str,
) -> None:
    r, client = rig
    now = int(r.clock.now().timestamp())
    attacks = {
        "anonymous": ({}, (401, "missing_credentials")),
        "no_role": (bearer(admin_token(r.keys, r.clock, role="user")), (403, "forbidden")),
        "not_an_admin": (bearer(admin_token(r.keys, r.clock, user="bob")), (403, "forbidden")),
        "expired": (bearer(backend_token(r.keys.backend, r.clock, sub="alice",
                                         role="site_admin", iat=now - 100, exp=now - 70)),
                    (401, "token_expired")),
    }
    for name, (headers, expected) in attacks.items():
        assert await send(client, method, path, headers=headers) == expected, name
    token = admin_token(r.keys, r.clock)
    first, _ = await send(client, method, path, headers=bearer(token))
    assert first != 401
    assert await send(client, method, path, headers=bearer(token)) == (401, "token_replayed")


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
async def test_sessions_of_elsewhere_or_without_csrf_are_refused(
    rig: tuple[Rig, Client], method: str, path: str,
) -> None:
    r, client = rig
    other = make_rig()
    async with TestClient(TestServer(create_app(other.services))) as elsewhere:
        await sign_in(elsewhere, other.keystore, other.clock)
        foreign = elsewhere.session.cookie_jar.filter_cookies(elsewhere.make_url("/"))
    assert await send(client, method, path, cookies={COOKIE: foreign[COOKIE].value}) == (
        401, "session_expired")
    await sign_in(client, r.keystore, r.clock)
    if method != "GET":
        assert await send(client, method, path) == (403, "csrf_failed")
        wrong = {"X-CSRF-Token": "x" * 43}
        assert await send(client, method, path, headers=wrong) == (403, "csrf_failed")
