"""Remote unlock through NATS runs the site's own route code (issue 12 item 3),
and the site's status heartbeat (contract section 3), with a real nats-server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nats
import pytest
from aiohttp.test_utils import TestClient, TestServer

from passbridge.fleet import wire
from passbridge.fleet.wire import RemoteUnlockReply, RemoteUnlockRequest, StatusMessage
from passbridge.service.app import create_app
from passbridge.sim.local_engines import NatsServer
from tests.fleet.support import FleetSite, eventually, fleet_site
from tests.service_support import _p256, remote_token

pytestmark = pytest.mark.slow


async def _via_nats(url: str, door: str, authorization: str,
                    body: dict[str, Any] | None = None) -> RemoteUnlockReply:
    nc = await nats.connect(url)
    try:
        msg = await nc.request(wire.remote_unlock_subject("hq"),
                               RemoteUnlockRequest(door, authorization, body).to_bytes(),
                               timeout=10)
        return RemoteUnlockReply.from_bytes(msg.data)
    finally:
        await nc.close()


async def _decisions(site: FleetSite) -> list[dict[str, Any]]:
    return [e for e in await site.services.audit.page(0, 1000) if e["kind"] == "decision"]


async def _responding(site: FleetSite, url: str) -> None:
    async def connected() -> bool:
        return site.link.connected
    await eventually(connected, 10, "the link is up")


async def test_a_granted_unlock_via_nats_is_the_routes_answer_and_cannot_be_replayed(
        tmp_path: Path, nats_server: NatsServer) -> None:
    async with fleet_site(tmp_path / "site.sqlite3", nats_server.url) as site, \
            TestClient(TestServer(create_app(site.services))) as client:
        await _responding(site, nats_server.url)
        token = remote_token(site.keys, site.clock, "front")
        reply = await _via_nats(nats_server.url, "front", f"Bearer {token}")
        assert reply.status == 200
        assert (reply.body["result"], reply.body["reason"], reply.body["user"]) == (
            "granted", "bypass_remote", "alice")
        [decision] = await _decisions(site)
        assert decision["decision_id"] == reply.body["decision_id"]
        # The same token again: over HTTP and over NATS it is one replay cache.
        http = await client.post("/v1/doors/front/remote-unlock",
                                 headers={"Authorization": f"Bearer {token}"})
        assert http.status == 401
        again = await _via_nats(nats_server.url, "front", f"Bearer {token}")
        assert (again.status, again.body) == (401, await http.json())
        assert again.body["error"]["code"] == "token_replayed"
        assert len(await _decisions(site)) == 1


async def test_forged_replayed_and_malformed_requests_are_refused_like_over_http(
        tmp_path: Path, nats_server: NatsServer) -> None:
    async with fleet_site(tmp_path / "site.sqlite3", nats_server.url) as site, \
            TestClient(TestServer(create_app(site.services))) as client:
        await _responding(site, nats_server.url)

        async def over_http(door: str, authorization: str) -> tuple[int, Any]:
            resp = await client.post(f"/v1/doors/{door}/remote-unlock",
                                     headers={"Authorization": authorization})
            return resp.status, await resp.json()

        async def over_nats(door: str, authorization: str) -> tuple[int, Any]:
            reply = await _via_nats(nats_server.url, door, authorization)
            return reply.status, reply.body

        forger = _p256()
        for door, make in [
            ("front", lambda: "Bearer " + remote_token(site.keys, site.clock, "front")
             .rsplit(".", 1)[0] + ".AAAA"),
            ("front", lambda: "Bearer " + _forged(forger, site)),
            ("front", lambda: ""),
            ("front", lambda: "Bearer not-a-jws"),
            ("nowhere", lambda: "Bearer " + remote_token(site.keys, site.clock, "nowhere")),
            ("front", lambda: "Bearer " + remote_token(site.keys, site.clock, "side")),
        ]:
            assert await over_nats(door, make()) == await over_http(door, make()), door
        # A token first used over HTTP is a replay over NATS, with the same answer.
        token = "Bearer " + remote_token(site.keys, site.clock, "side", user="carol")
        status, first = await over_http("side", token)
        assert status == 200 and first["result"] == "granted"
        assert await over_nats("side", token) == (401, {"error": {
            "code": "token_replayed", "message": "token already used"}})
        # Not the contract's request at all: 400, and nothing decided.
        nc = await nats.connect(nats_server.url)
        msg = await nc.request(wire.remote_unlock_subject("hq"), b'{"v":1,"door":5}',
                               timeout=10)
        await nc.close()
        bad = RemoteUnlockReply.from_bytes(msg.data)
        assert bad.status == 400 and bad.body["error"]["code"] == "malformed_body"
        assert [d["result"] for d in await _decisions(site)] == ["granted"]


def _forged(key: Any, site: FleetSite) -> str:
    from tests.service_support import backend_token

    return backend_token(key, site.clock, sub="alice", door="front")


async def test_status_heartbeat_reports_revision_and_the_acknowledged_seq(
        tmp_path: Path, nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    heard: list[StatusMessage] = []

    async def on_status(msg: Any) -> None:
        heard.append(StatusMessage.from_bytes(msg.data))

    await nc.subscribe(wire.STATUS_SUBJECTS, cb=on_status)
    try:
        async with fleet_site(tmp_path / "site.sqlite3", nats_server.url,
                              status_interval=0.2) as site:
            await site.decide(5)

            async def caught_up() -> bool:
                return bool(heard) and heard[-1].last_seq >= 5 and (
                    heard[-1].acked_seq == heard[-1].last_seq)
            await eventually(caught_up, 20, "a status with everything acknowledged")
            last = heard[-1]
            assert last.site == "hq" and last.revision == site.services.site.revision
            assert last.last_seq == max(await site.db_seqs())
    finally:
        await nc.close()
    assert json.loads(last.to_bytes())["at"].endswith("Z")


async def test_remote_unlocks_in_flight_are_bounded(
        tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from passbridge.fleet import site_link

    monkeypatch.setattr(site_link, "MAX_REMOTE_UNLOCKS_IN_FLIGHT", 0)
    async with fleet_site(tmp_path / "site.sqlite3", nats_server.url) as site:
        await _responding(site, nats_server.url)
        token = remote_token(site.keys, site.clock, "front")
        reply = await _via_nats(nats_server.url, "front", f"Bearer {token}")
        assert reply.status == 503 and reply.body["error"]["code"] == "busy"
        assert await _decisions(site) == []


async def test_a_remote_unlock_being_decided_at_stop_still_gets_its_answer(
        tmp_path: Path, nats_server: NatsServer) -> None:
    import asyncio

    async with fleet_site(tmp_path / "site.sqlite3", nats_server.url) as site:
        await _responding(site, nats_server.url)
        controller = site.services.controller
        decide = controller.remote
        entered = asyncio.Event()

        async def slow_remote(*args: Any) -> Any:  # a slow audit commit, say
            entered.set()
            await asyncio.sleep(0.5)
            return await decide(*args)
        controller.remote = slow_remote  # type: ignore[method-assign]
        token = remote_token(site.keys, site.clock, "front")
        asked = asyncio.create_task(_via_nats(nats_server.url, "front", f"Bearer {token}"))
        await asyncio.wait_for(entered.wait(), 10)
        await site.link.stop()
        reply = await asked
        assert reply.status == 200 and reply.body["result"] == "granted"
        assert len(await _decisions(site)) == 1
