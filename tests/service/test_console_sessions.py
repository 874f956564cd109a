"""Sign-in for people: single-use links, session cookies, CSRF, expiry, and
what ends a session; attacked through a real aiohttp server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from passbridge.adapters.keystore import SqliteKeyStore
from passbridge.core.tokens import public_key_to_pem
from passbridge.service import site_reload
from passbridge.service.app import create_app
from passbridge.service.one_time import SIGN_IN, mint_sign_in_link
from passbridge.service.sessions import COOKIE, SESSIONS
from tests.service_support import (
    Client,
    Rig,
    admin_token,
    error_of,
    link_token,
    make_rig,
    metric_sample,
    sign_in,
    site_document,
)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def changed_site(r: Rig, change: Callable[[dict[str, Any]], None]) -> str:
    """The rig's site document, changed, as JSON text (a site file)."""
    doc = site_document(public_key_to_pem(r.keys.backend), public_key_to_pem(r.keys.bridge))
    change(doc)
    return json.dumps(doc)


async def reload_site(r: Rig, change: Callable[[dict[str, Any]], None]) -> None:
    """Put a changed site in force through the service's live reload."""
    await site_reload.reload_site(r.services, changed_site(r, change), source="api",
                                  actor="test")


def alice(doc: dict[str, Any]) -> dict[str, Any]:
    return next(u for u in doc["users"] if u["id"] == "alice")


async def link_for(client: Client, r: Rig, user: str = "alice") -> str:
    resp = await client.post("/v1/console-links", json={"user": user},
                             headers=auth(admin_token(r.keys, r.clock)))
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["url"])


# --- links and the session round trip ----------------------------------------


async def test_a_link_signs_a_site_admin_in_and_the_cookie_administers(
    rig: tuple[Rig, Client],
) -> None:
    r, client = rig
    resp = await client.post("/v1/console-links", json={"user": "alice"},
                             headers=auth(admin_token(r.keys, r.clock)))
    assert resp.status == 200
    body = await resp.json()
    # The token rides in the fragment (never sent to a server), 5 minutes.
    assert body["url"].startswith(f"http://{client.host}:{client.port}/console/sign-in#token=")
    assert body["expires"] == (r.clock.now() + timedelta(minutes=5)).isoformat()

    signed = await client.post("/v1/session", json={"token": link_token(body["url"])})
    assert signed.status == 200
    session = await signed.json()
    assert session["user"] == "alice" and len(session["csrf_token"]) >= 32
    assert session["idle_expires"] == (r.clock.now() + timedelta(minutes=15)).isoformat()
    assert session["absolute_expires"] == (r.clock.now() + timedelta(hours=8)).isoformat()
    cookie = signed.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert "secure" not in attributes  # plain HTTP here; under TLS it is (process test)

    assert (await (await client.get("/v1/session")).json()) == session
    doors = await client.get("/v1/doors")
    assert doors.status == 200
    changed = await client.put("/v1/doors/front/override", json={"state": "unlocked",
                                                                "minutes": 5},
                               headers={"X-CSRF-Token": session["csrf_token"]})
    assert changed.status == 200 and (await changed.json())["state"] == "unlocked"
    events = (await (await client.get("/v1/events")).json())["events"]
    kinds = {e["kind"]: e for e in events}
    assert kinds["override"]["payload"]["actor"] == "session:alice"
    assert kinds["console_link_issued"]["payload"]["actor"] == "app-backend:alice"
    assert kinds["session_started"]["payload"]["user"] == "alice"
    assert body["url"].split("#token=")[1] not in str(events)  # the token is never recorded

    out = await client.delete("/v1/session", headers={"X-CSRF-Token": session["csrf_token"]})
    assert out.status == 204
    assert f"{COOKIE}=" in out.headers["Set-Cookie"]
    assert len(client.app[SESSIONS]) == 0
    # The browser dropped the cookie; an old copy of it is refused too.
    stale = await client.get("/v1/doors", cookies={COOKIE: signed.cookies[COOKIE].value})
    assert await error_of(stale, 401) == "session_expired"


async def test_a_replayed_link_is_refused(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    token = link_token(await link_for(client, r))
    assert (await client.post("/v1/session", json={"token": token})).status == 200
    client.session.cookie_jar.clear()
    again = await client.post("/v1/session", json={"token": token})
    assert await error_of(again, 401) == "link_used"
    assert COOKIE not in again.cookies
    metrics = await (await client.get("/metrics")).text()
    assert metric_sample(metrics, "passbridge_one_time_code_failures_total",
                         kind=SIGN_IN, reason="used") == 1


async def test_an_expired_link_is_refused(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    token = link_token(await link_for(client, r))
    r.clock.advance(5 * 60 + 1)
    assert await error_of(await client.post("/v1/session", json={"token": token}),
                          401) == "link_expired"


async def test_a_made_up_or_malformed_token_is_refused(rig: tuple[Rig, Client]) -> None:
    _, client = rig
    made_up = await client.post("/v1/session", json={"token": "A" * 43})
    assert await error_of(made_up, 401) == "link_invalid"
    for body in ({}, {"token": ""}, {"token": 7}, {"token": "x" * 129}):
        assert await error_of(await client.post("/v1/session", json=body), 400) == \
            "malformed_body"


async def test_links_only_for_enabled_site_admins(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    for user in ("bob", "nobody"):
        resp = await client.post("/v1/console-links", json={"user": user},
                                 headers=auth(admin_token(r.keys, r.clock)))
        assert await error_of(resp, 422) == "not_site_admin"
    # A caller who is not a site admin cannot mint one at all.
    bob = await client.post("/v1/console-links", json={"user": "alice"},
                            headers=auth(admin_token(r.keys, r.clock, user="bob")))
    assert await error_of(bob, 403) == "forbidden"
    anon = await client.post("/v1/console-links", json={"user": "alice"})
    assert await error_of(anon, 401) == "missing_credentials"


async def test_a_link_of_a_disabled_admin_starts_no_session(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    token = link_token(await link_for(client, r))
    await reload_site(r, lambda doc: alice(doc).update(enabled=False))
    assert await error_of(await client.post("/v1/session", json={"token": token}),
                          403) == "not_site_admin"
    assert COOKIE not in client.session.cookie_jar.filter_cookies(client.make_url("/"))


# --- CSRF ---------------------------------------------------------------------


async def test_changes_without_the_csrf_token_are_refused(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    csrf = await sign_in(client, r.keystore, r.clock)
    body = {"state": "unlocked", "minutes": 5}
    for headers in ({}, {"X-CSRF-Token": ""}, {"X-CSRF-Token": csrf[:-1] + "x"},
                    {"X-CSRF-Token": csrf + "x"}):
        resp = await client.put("/v1/doors/front/override", json=body, headers=headers)
        assert await error_of(resp, 403) == "csrf_failed", headers
    lockdown = await client.put("/v1/site/lockdown", json={"active": True})
    assert await error_of(lockdown, 403) == "csrf_failed"
    signout = await client.delete("/v1/session")
    assert await error_of(signout, 403) == "csrf_failed"
    # The right token from another site's page is refused as well.
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}, {"Origin": "null"}):
        resp = await client.put("/v1/doors/front/override", json=body,
                                headers={"X-CSRF-Token": csrf, **headers})
        assert await error_of(resp, 403) == "cross_origin", headers
    door = await (await client.get("/v1/doors/front")).json()
    assert door["override"] is None and door["lockdown"] is False
    ok = await client.put("/v1/doors/front/override", json=body, headers={
        "X-CSRF-Token": csrf, "Origin": f"http://{client.host}:{client.port}",
        "Sec-Fetch-Site": "same-origin"})
    assert ok.status == 200


# --- what ends a session -----------------------------------------------------------


async def test_a_session_of_another_service_is_refused(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    await sign_in(client, r.keystore, r.clock)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
    other = make_rig()
    async with TestClient(TestServer(create_app(other.services))) as elsewhere:
        resp = await elsewhere.get("/v1/doors", cookies={COOKIE: cookie})
        assert await error_of(resp, 401) == "session_expired"
        assert await error_of(await elsewhere.get("/v1/session", cookies={COOKIE: cookie}),
                              401) == "session_expired"
    assert (await client.get("/v1/doors")).status == 200  # still good where it was made


async def test_a_reload_that_removes_the_role_ends_the_session(
    rig: tuple[Rig, Client],
) -> None:
    """Alice, signed in, puts a site in force that takes her own role away
    (PUT /v1/site with her session): her next request finds the session ended."""
    r, client = rig
    csrf = await sign_in(client, r.keystore, r.clock)
    reloaded = await client.put("/v1/site", data=changed_site(r, lambda d: alice(d).pop("role")),
                                headers={"X-CSRF-Token": csrf})
    assert reloaded.status == 200, await reloaded.text()
    assert await error_of(await client.get("/v1/doors"), 401) == "session_ended"
    # Ended for good: giving the role back does not bring the session back.
    await reload_site(r, lambda doc: None)
    assert await error_of(await client.get("/v1/doors"), 401) == "session_expired"
    events = (await (await client.get(
        "/v1/events", headers=auth(admin_token(r.keys, r.clock)))).json())["events"]
    assert [e["payload"]["actor"] for e in events if e["kind"] == "site_reloaded"] == [
        "session:alice", "test"]


async def test_disabling_the_admin_ends_the_session(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    await sign_in(client, r.keystore, r.clock)
    await reload_site(r, lambda doc: alice(doc).update(enabled=False))
    assert await error_of(await client.get("/v1/session"), 401) == "session_ended"


async def test_idle_and_absolute_expiry(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    await sign_in(client, r.keystore, r.clock)
    for _ in range(3):  # each request starts the 15 idle minutes again
        r.clock.advance(14 * 60)
        assert (await client.get("/v1/doors")).status == 200
    r.clock.advance(15 * 60)
    assert await error_of(await client.get("/v1/doors"), 401) == "session_expired"

    await sign_in(client, r.keystore, r.clock)
    for _ in range(8 * 6 - 1):  # busy all day: every 10 minutes, up to 7 h 50
        r.clock.advance(10 * 60)
        assert (await client.get("/v1/session")).status == 200
    r.clock.advance(10 * 60)  # 8 hours after sign-in, however busy
    assert await error_of(await client.get("/v1/doors"), 401) == "session_expired"


async def test_a_bearer_token_wins_over_a_cookie(rig: tuple[Rig, Client]) -> None:
    """With an Authorization header the cookie is not looked at: a bad token
    is 401 even beside a good session (no mixing of credentials)."""
    r, client = rig
    await sign_in(client, r.keystore, r.clock)
    resp = await client.get("/v1/doors", headers={"Authorization": "Bearer nonsense"})
    assert resp.status == 401


async def test_sign_out_ends_a_live_event_stream(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    csrf = await sign_in(client, r.keystore, r.clock)
    stream = await client.get("/v1/events?stream=1")
    assert stream.status == 200
    assert (await client.delete("/v1/session", headers={"X-CSRF-Token": csrf})).status == 204
    # The next record wakes the stream, which checks its session first.
    await r.services.controller.card("side", "20002")
    text = await asyncio.wait_for(stream.text(), 30)
    assert text.rstrip().endswith('data: {"reason": "signed_out"}')
    assert "20002" not in text.split("session_ended")[-1]


# --- storage -------------------------------------------------------------------


def test_links_are_stored_only_as_a_keyed_hash(tmp_path: Path) -> None:
    db = tmp_path / "pb.sqlite3"
    store = SqliteKeyStore(db)
    r = make_rig()
    url, _ = mint_sign_in_link(store, "alice", issued_by="test", now=r.clock.now(),
                               base="http://x")
    store.close()
    token = link_token(url)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT digest, kind, user_id FROM ks_one_time_codes").fetchall()
        dump = "\n".join(conn.iterdump())
    assert len(rows) == 1 and rows[0][1:] == ("sign_in", "alice")
    assert token not in dump and token.encode().hex() not in dump
    # Keyed: not the plain hash of the token either.
    assert rows[0][0] != hashlib.sha256(token.encode()).digest()
    assert rows[0][0] != hashlib.sha256(b"sign_in\0" + token.encode()).digest()
