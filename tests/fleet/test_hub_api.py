"""The hub's HTTP API over a real server: operators only, remote unlock passed
through to the site, the fleet view, and signed statements into site buckets."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import nats
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from passbridge.fleet import wire
from passbridge.fleet.hub.publish import AdminSigner
from passbridge.p256 import public_key_bytes
from passbridge.sim.fleet_site import SimulatedSite, settled
from passbridge.sim.local_engines import NatsServer
from tests.fleet.hub_support import new_operator, new_signer, running_hub, wait_for

pytestmark = pytest.mark.slow


async def test_every_route_but_remote_unlock_wants_a_fleet_operator(
        nats_server: NatsServer, pg_url: str) -> None:
    operator = new_operator()
    stranger = new_operator()
    async with running_hub(nats_server.url, pg_url, operator=operator) as (_hub, client):
        for method, path in (("GET", "/v1/sites"), ("GET", "/v1/audit"),
                             ("GET", "/v1/alerts"), ("PUT", "/v1/sites/hq/document"),
                             ("POST", "/v1/sites/hq/phones/p1"),
                             ("DELETE", "/v1/sites/hq/phones/p1")):
            answer = await client.request(method, path)
            assert answer.status == 401, (method, path)
            assert (await answer.json())["error"]["code"] == "missing_credentials"
            answer = await client.request(method, path, headers=stranger.headers())
            assert answer.status == 401, (method, path)
            answer = await client.request(method, path, headers=operator.headers(role="viewer"))
            assert answer.status == 403, (method, path)
            answer = await client.request(method, path,
                                          headers=operator.headers(audience="hq"))
            assert answer.status == 401, (method, path)
        headers = operator.headers()
        assert (await client.get("/v1/sites", headers=headers)).status == 200
        replayed = await client.get("/v1/sites", headers=headers)
        assert replayed.status == 401
        assert (await replayed.json())["error"]["code"] == "token_replayed"
        health = await client.get("/healthz")
        assert health.status == 200 and (await health.json())["nats"] == "connected"
        scrape = await (await client.get("/metrics")).text()
        assert "passbridge_hub_audit_records_total" in scrape
        assert "passbridge_hub_sites_online" in scrape


async def test_sites_are_listed_from_their_status_heartbeats(
        nats_server: NatsServer, pg_url: str) -> None:
    operator = new_operator()
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        async with running_hub(nats_server.url, pg_url, operator=operator) as (hub, client):
            hq = SimulatedSite("hq")
            await hq.publish_new(js, 4)
            hq.seq += 3  # three more records the stream has not acknowledged yet
            await hq.heartbeat(nc)
            await wait_for(lambda: _heard(hub, "hq"), what="hq's status")
            await wait_for(lambda: _stored(client, operator, "hq", 4), what="hq's records")
            answer = await client.get("/v1/sites", headers=operator.headers())
            [site] = (await answer.json())["sites"]
            assert site["site"] == "hq" and site["online"] is True
            assert (site["last_seq"], site["acked_seq"], site["audit_backlog"]) == (7, 4, 3)
            assert site["revision"] == "r1" and site["hub_records"] == 4
            assert site["hub_verified_seq"] == 4 and site["open_alerts"] == 0
            assert site["link_lag_seconds"] is not None and site["last_heard"]
            scrape = await (await client.get("/metrics")).text()
            assert "passbridge_hub_audit_backlog_records 3.0" in scrape
    finally:
        await nc.close()


async def _heard(hub: Any, site: str) -> bool:
    return site in hub.statuses


async def _stored(client: Any, operator: Any, site: str, n: int) -> bool:
    answer = await client.get(f"/v1/audit?site={site}", headers=operator.headers())
    return len((await answer.json())["records"]) == n


async def test_remote_unlock_is_the_sites_answer_or_a_clear_timeout(
        nats_server: NatsServer, pg_url: str) -> None:
    nc = await nats.connect(nats_server.url)
    seen: list[wire.RemoteUnlockRequest] = []

    async def site_answers(msg: Any) -> None:
        request = wire.RemoteUnlockRequest.from_bytes(msg.data)
        seen.append(request)
        await msg.respond(wire.RemoteUnlockReply(
            403, {"result": "denied", "reason": "no_access", "door": request.door}).to_bytes())

    async def site_is_slow(_msg: Any) -> None:
        await asyncio.sleep(0)  # takes the request, never answers

    try:
        await nc.subscribe(wire.remote_unlock_subject("hq"), queue=wire.SITE_QUEUE_GROUP,
                           cb=site_answers)
        await nc.subscribe(wire.remote_unlock_subject("slow"), queue=wire.SITE_QUEUE_GROUP,
                           cb=site_is_slow)
        await settled(nc)  # both responders are at the server before the hub asks
        async with running_hub(nats_server.url, pg_url, unlock_timeout=0.5) as (_hub, client):
            answer = await client.post("/v1/sites/hq/doors/front/remote-unlock",
                                       headers={"Authorization": "Bearer abc.def.ghi"},
                                       json={"note": "delivery"})
            assert answer.status == 403
            assert await answer.json() == {"result": "denied", "reason": "no_access",
                                           "door": "front"}
            assert seen == [wire.RemoteUnlockRequest("front", "Bearer abc.def.ghi",
                                                     {"note": "delivery"})]
            answer = await client.post("/v1/sites/slow/doors/front/remote-unlock")
            assert answer.status == 504
            error = (await answer.json())["error"]
            assert error["code"] == "site_timeout" and "result" not in error
            answer = await client.post("/v1/sites/nowhere/doors/front/remote-unlock")
            assert answer.status == 503
            assert (await answer.json())["error"]["code"] == "site_offline"
    finally:
        await nc.close()


async def _statement(js: Any, site: str, key: str) -> bytes:
    bucket = await js.key_value(wire.kv_bucket(site))
    entry = await bucket.get(key)
    assert entry.value is not None
    return bytes(entry.value)


def _admin_keys(signer: AdminSigner) -> dict[str, wire.AdminKey]:
    return {signer.kid: wire.AdminKey(signer.kid, signer.key.public_key())}


async def test_documents_and_phones_go_out_signed_with_increasing_seqs(
        nats_server: NatsServer, pg_url: str) -> None:
    operator, signer = new_operator(), new_signer()
    phone_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = public_key_bytes(phone_key)
    document = "site:\n  id: hq\n  zone: Europe/Paris\n"
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        async with running_hub(nats_server.url, pg_url, operator=operator,
                               signer=signer) as (_hub, client):
            answer = await client.put("/v1/sites/hq/document", data=document,
                                      headers=operator.headers())
            assert answer.status == 200, await answer.text()
            assert (await answer.json())["seq"] == 1
            encoded = base64.urlsafe_b64encode(point).rstrip(b"=").decode()
            answer = await client.post("/v1/sites/hq/phones/alice-phone",
                                       json={"user": "alice", "public_key": encoded},
                                       headers=operator.headers())
            assert (await answer.json())["seq"] == 2
            answer = await client.delete("/v1/sites/hq/phones/alice-phone",
                                         headers=operator.headers())
            assert answer.status == 200 and (await answer.json())["seq"] == 3

            keys = _admin_keys(signer)
            site_doc = wire.verify_statement(await _statement(js, "hq", wire.SITE_KEY),
                                             keys, "hq", applied_seq=0, key=wire.SITE_KEY)
            assert isinstance(site_doc, wire.SiteStatement)
            assert (site_doc.seq, site_doc.document) == (1, document)
            revoke = wire.verify_statement(
                await _statement(js, "hq", wire.phone_key("alice-phone")), keys, "hq",
                applied_seq=2)
            assert isinstance(revoke, wire.PhoneStatement)
            assert (revoke.seq, revoke.op, revoke.user) == (3, "revoke", "alice")
            # Another hub key, another site, an old seq: each refused by the site's check.
            assert not wire.verify_statement(await _statement(js, "hq", wire.SITE_KEY),
                                             _admin_keys(new_signer()), "hq",
                                             applied_seq=0).ok
            assert not wire.verify_statement(await _statement(js, "hq", wire.SITE_KEY),
                                             keys, "north", applied_seq=0).ok
            assert not wire.verify_statement(await _statement(js, "hq", wire.SITE_KEY),
                                             keys, "hq", applied_seq=3).ok

            answer = await client.put("/v1/sites/north/document", data=document,
                                      headers=operator.headers())
            assert answer.status == 422
            assert (await answer.json())["error"]["field"] == "document"
            answer = await client.post("/v1/sites/hq/phones/bob-phone",
                                       json={"user": "bob", "public_key": "AAAA"},
                                       headers=operator.headers())
            assert answer.status == 422
            assert (await answer.json())["error"]["field"] == "public_key"
    finally:
        await nc.close()


async def test_concurrent_publishes_reach_the_bucket_in_seq_order(
        nats_server: NatsServer, pg_url: str) -> None:
    """A site refuses a seq below one it applied: statements for one site must
    land in the order of their seqs, however many are published at once."""
    operator, signer = new_operator(), new_signer()
    point = base64.urlsafe_b64encode(public_key_bytes(
        ec.generate_private_key(ec.SECP256R1()).public_key())).rstrip(b"=").decode()
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        async with running_hub(nats_server.url, pg_url, operator=operator,
                               signer=signer) as (_hub, client):
            await client.put("/v1/sites/hq/document", data="site: {id: hq}\n",
                             headers=operator.headers())
            bucket = await js.key_value(wire.kv_bucket("hq"))
            watcher = await bucket.watchall(include_history=False)
            answers = await asyncio.gather(*(
                client.post(f"/v1/sites/hq/phones/p{i}", json={"user": "u", "public_key": point},
                            headers=operator.headers()) for i in range(12)))
            assert sorted([(await a.json())["seq"] for a in answers]) == list(range(2, 14))
            arrived: list[int] = []
            async for entry in watcher:
                if entry is None or entry.value is None:
                    continue
                statement = wire.verify_statement(entry.value, _admin_keys(signer), "hq",
                                                  applied_seq=0)
                assert isinstance(statement, wire.PhoneStatement | wire.SiteStatement)
                if isinstance(statement, wire.PhoneStatement):
                    arrived.append(statement.seq)
                if len(arrived) == 12:
                    break
            assert arrived == sorted(arrived)
            await watcher.stop()
    finally:
        await nc.close()
