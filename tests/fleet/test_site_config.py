"""Signed site documents and enrolments from the site's KV bucket (issue 12
item 4), with a real nats-server: verified, applied in order, refused and
audited when unsigned, unknown, for another site or stale, caught up after
being offline, and a revocation in force within 2 s."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import nats
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from passbridge.core.tokens import p256_point, public_key_to_pem
from passbridge.fleet import wire
from passbridge.protocol.ble_advert import format_adv_id
from passbridge.service.app import create_app
from passbridge.sim.local_engines import NatsServer
from tests.fleet.support import FleetSite, eventually, fleet_site
from tests.service_support import _p256, nearby_token, phone_adv, site_document

pytestmark = pytest.mark.slow

# The number: a revocation published at the hub is in force within 2 s.
REVOCATION_BOUND_S = 2.0


async def _put(url: str, key: str, value: bytes) -> None:
    """What a hub does: the value into the site's bucket (made if missing)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            kv = await js.key_value(wire.kv_bucket("hq"))
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(bucket=wire.kv_bucket("hq"), history=1)
        await kv.put(key, value)
    finally:
        await nc.close()


async def _changes(site: FleetSite, kind: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in await site.services.audit.page(0, 1000) if e["kind"] == kind]


async def _connected(site: FleetSite) -> None:
    async def up() -> bool:
        return site.link.connected
    await eventually(up, 10, "the link is up")


def _revoke(site: FleetSite, seq: int, phone: str = "bob-phone", user: str = "bob",
            aud: str = "hq") -> dict[str, Any]:
    return wire.phone_revoke_claims(aud, seq, phone, user, int(time.time()))


async def test_a_revocation_published_to_kv_is_in_force_within_2_s(
        tmp_path: Path, nats_server: NatsServer) -> None:
    async with fleet_site(tmp_path / "site.sqlite3", nats_server.url) as site, \
            TestClient(TestServer(create_app(site.services))) as client:
        await _connected(site)
        # bob's phone is near the side door and opens it.
        adv = phone_adv(site, "bob-phone")  # type: ignore[arg-type]
        site.services.proximity.radio("side", site_in()).observe(adv, -60)

        async def nearby() -> dict[str, Any]:
            token = nearby_token(site.keys.phones["bob-phone"], site.clock, cred="bob-phone",
                                 door="side", adv=format_adv_id(adv))
            resp = await client.post("/v1/doors/side/nearby-unlock", data=token,
                                     headers={"Content-Type": "application/jwt"})
            body: dict[str, Any] = await resp.json()
            return body
        assert (await nearby())["result"] == "granted"

        await _put(nats_server.url, wire.phone_key("bob-phone"), site.statement(_revoke(site, 1)))

        async def refused() -> bool:
            answer = await nearby()
            return (answer["result"], answer["reason"]) == ("denied", "unknown_credential")
        took = await eventually(refused, REVOCATION_BOUND_S, "bob's phone refused")
        assert took <= REVOCATION_BOUND_S

        async def recorded() -> bool:
            return bool(await _changes(site, "fleet_applied"))
        await eventually(recorded, 10, "the revocation's record")
        [applied] = await _changes(site, "fleet_applied")
        assert applied | {"at": None} == {
            "key": wire.phone_key("bob-phone"), "seq": 1, "kid": "fleet-admin-1", "typ": "phone",
            "op": "revoke", "phone": "bob-phone", "user": "bob", "at": None}
        assert await _changes(site, "fleet_refused") == []


def site_in() -> Any:
    from passbridge.core.model import Side

    return Side.IN


async def test_unsigned_unknown_other_site_and_stale_values_are_refused_and_audited(
        tmp_path: Path, nats_server: NatsServer) -> None:
    async with fleet_site(tmp_path / "site.sqlite3", nats_server.url) as site:
        await _connected(site)
        alice = wire.phone_key("alice-phone")
        bob = wire.phone_key("bob-phone")
        unsigned = jwt.encode(_revoke(site, 7, "alice-phone", "alice"), None, algorithm="none")
        await _put(nats_server.url, alice, unsigned.encode())
        await _put(nats_server.url, alice, site.statement(
            _revoke(site, 8, "alice-phone", "alice"), kid="stranger", key=_p256()))
        await _put(nats_server.url, alice, site.statement(
            _revoke(site, 9, "alice-phone", "alice"), key=_p256()))  # forged under our kid
        await _put(nats_server.url, alice, site.statement(
            _revoke(site, 10, "alice-phone", "alice", aud="branch")))
        await _put(nats_server.url, bob, site.statement(_revoke(site, 11)))  # applied
        await _put(nats_server.url, alice, site.statement(
            _revoke(site, 11, "alice-phone", "alice")))  # stale: 11 is not after 11

        async def six() -> bool:
            return len(await _changes(site, "fleet_refused")) + len(
                await _changes(site, "fleet_applied")) == 6
        await eventually(six, 10, "every value judged")
        refused = await _changes(site, "fleet_refused")
        assert [(r["key"], r["why"]) for r in refused] == [
            (alice, "unsigned"), (alice, "unknown_key"), (alice, "bad_signature"),
            (alice, "other_site"), (alice, "stale")]
        assert refused[-1]["seq"] == 11 and refused[1]["kid"] == "stranger"
        enrolment = site.keystore.phone("alice-phone")
        assert enrolment is not None and not enrolment.revoked
        bob_now = site.keystore.phone("bob-phone")
        assert bob_now is not None and bob_now.revoked


async def test_an_offline_site_catches_up_in_seq_order_and_only_once(
        tmp_path: Path, nats_server: NatsServer) -> None:
    db = tmp_path / "site.sqlite3"
    admin = _p256()
    newcomer = _p256()
    async with fleet_site(db, nats_server.url, admin=admin) as site:
        keys = site.keys
        await _connected(site)
    # Published while the site is down: enrol a new phone for carol, then
    # revoke it again (seq order matters), and revoke bob's.
    now = int(time.time())
    enrol = wire.phone_enrol_claims("hq", 3, "carol-phone", "carol", p256_point(newcomer), now)
    revoke_carol = wire.phone_revoke_claims("hq", 5, "carol-phone", "carol", now)
    for key, claims in [(wire.phone_key("bob-phone"), _revoke(site, 4)),
                        (wire.phone_key("carol-phone"), enrol),
                        (wire.phone_key("carol-phone"), revoke_carol)]:
        await _put(nats_server.url, key, wire.sign_statement(admin, "fleet-admin-1",
                                                              claims).encode())
    other = wire.phone_enrol_claims("hq", 6, "dave-phone", "bob", p256_point(_p256()), now)
    await _put(nats_server.url, wire.phone_key("dave-phone"),
               wire.sign_statement(admin, "fleet-admin-1", other).encode())
    async with fleet_site(db, nats_server.url, keys=keys, admin=admin) as site:
        async def applied() -> bool:
            return len(await _changes(site, "fleet_applied")) == 3
        await eventually(applied, 10, "the catch-up applied")
        done = await _changes(site, "fleet_applied")
        # The bucket keeps the latest per key: carol's revocation (5), not her enrolment.
        assert [(d["seq"], d["phone"], d["op"]) for d in done] == [
            (4, "bob-phone", "revoke"), (5, "carol-phone", "revoke"),
            (6, "dave-phone", "enrol")]
        dave = site.keystore.phone("dave-phone")
        assert dave is not None and dave.user_id == "bob" and not dave.revoked
        assert await _changes(site, "fleet_refused") == []
    # Again: nothing new in the bucket, nothing applied or refused twice.
    async with fleet_site(db, nats_server.url, keys=keys, admin=admin) as site:
        await _connected(site)
        await _put(nats_server.url, wire.phone_key("erin-phone"), wire.sign_statement(
            admin, "fleet-admin-1", wire.phone_revoke_claims("hq", 7, "erin-phone", "erin",
                                                              now)).encode())

        async def seventh() -> bool:
            return any(d["seq"] == 7 for d in await _changes(site, "fleet_applied"))
        await eventually(seventh, 10, "the new statement")
        assert [d["seq"] for d in await _changes(site, "fleet_applied")] == [4, 5, 6, 7]
        assert await _changes(site, "fleet_refused") == []


async def test_a_site_document_goes_through_the_reload(
        tmp_path: Path, nats_server: NatsServer) -> None:
    async with fleet_site(tmp_path / "site.sqlite3", nats_server.url) as site:
        await _connected(site)
        old_revision = site.services.site.revision
        document = site_document(public_key_to_pem(site.keys.backend),
                                 public_key_to_pem(site.keys.bridge))
        document["doors"].append({"id": "annex", "reader": True, "keypad": False})
        text = yaml.safe_dump(document)
        now = int(time.time())
        await _put(nats_server.url, wire.SITE_KEY, site.statement(
            wire.site_claims("hq", 1, text, now)))

        async def reloaded() -> bool:
            return "annex" in site.services.site.doors and bool(
                await _changes(site, "fleet_applied"))
        await eventually(reloaded, 10, "the new door in force, and recorded")
        [applied] = await _changes(site, "fleet_applied")
        assert applied["typ"] == "site" and applied["changed"]
        assert applied["revision"] == site.services.site.revision != old_revision
        [reload] = await _changes(site, "site_reloaded")
        assert reload["source"] == "fleet" and reload["actor"] == "fleet:fleet-admin-1"

        # A signed document with a problem changes nothing and is refused (audited twice:
        # by the reload, with its places, and as a fleet statement, with its seq).
        document["doors"].append({"id": "annex", "reader": True})  # a duplicate id
        await _put(nats_server.url, wire.SITE_KEY, site.statement(
            wire.site_claims("hq", 2, yaml.safe_dump(document), now)))

        async def refused() -> bool:
            return bool(await _changes(site, "fleet_refused"))
        await eventually(refused, 10, "the bad document refused")
        [why] = await _changes(site, "fleet_refused")
        assert why["why"] == "invalid" and why["seq"] == 2 and "annex" in why["detail"]
        assert len(await _changes(site, "site_reload_refused")) == 1
        assert site.services.site.revision == applied["revision"]


async def test_after_a_nats_restart_the_watch_is_back_and_revocations_still_arrive(
        tmp_path: Path, nats_server: NatsServer) -> None:
    async with fleet_site(tmp_path / "site.sqlite3", nats_server.url) as site:
        await _connected(site)
        await _put(nats_server.url, wire.phone_key("alice-phone"),
                   site.statement(_revoke(site, 1, "alice-phone", "alice")))

        async def revoked(phone: str) -> bool:
            enrolment = site.keystore.phone(phone)
            return enrolment is not None and enrolment.revoked
        await eventually(lambda: revoked("alice-phone"), REVOCATION_BOUND_S, "alice revoked")
        nats_server.restart(kill=True)
        await _connected(site)
        await _put(nats_server.url, wire.phone_key("bob-phone"), site.statement(_revoke(site, 2)))
        await eventually(lambda: revoked("bob-phone"), REVOCATION_BOUND_S,
                         "bob revoked after the restart")

        async def two() -> bool:
            return len(await _changes(site, "fleet_applied")) == 2
        await eventually(two, 10, "both recorded")
        assert await _changes(site, "fleet_refused") == []
