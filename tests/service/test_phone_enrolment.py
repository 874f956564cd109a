"""Phone enrolment without the command line, and revocation, through a real
aiohttp server; the phone's taps go through the production NFC path
(the simulated phone answering the reader driver)."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from passbridge.adapters.keystore import MemoryKeyStore
from passbridge.clock import ManualClock
from passbridge.core.model import Reason, Result
from passbridge.service.app import create_app
from passbridge.service.one_time import ENROL
from passbridge.service.runtime import Services
from passbridge.sim.phone import SimulatedPhone
from passbridge.sim.radios import SimulatedRadios
from tests.service_support import Client, error_of, metric_sample, services_with_phones, sign_in

SITE = """
site: {id: hq, timezone: America/Los_Angeles}
doors:
  - {id: front, reader: true, keypad: true}
users:
  - {id: alice, role: site_admin, cards: ["10001"], pin: "2468", phones: [alice-phone],
     doors: all}
  - {id: bob, cards: ["20002"], pin: "1357", phones: [bob-phone, bob-tablet], doors: all}
  - {id: carol, cards: ["30003"], pin: "9753", doors: all}
  - {id: dave, enabled: false, cards: ["40004"], phones: [dave-phone], doors: all}
"""
CODE_SHAPE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$")



@dataclass
class Rig:
    services: Services
    keystore: MemoryKeyStore
    clock: ManualClock
    client: Client
    csrf: str

    async def code_for(self, user: str) -> str:
        resp = await self.client.post(f"/v1/users/{user}/enrolments",
                                      headers={"X-CSRF-Token": self.csrf})
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["code"])

    async def enrol(self, secret: str, device: SimulatedPhone, **override: Any
                    ) -> aiohttp.ClientResponse:
        """What the phone app sends: no cookie, no other credential."""
        body = {"code": secret, "phone": device.phone_id,
                "public_key": b64(device.public_key_point), **override}
        async with aiohttp.ClientSession() as app:
            resp = await app.post(str(self.client.make_url("/v1/enrol")), json=body)
            await resp.read()
            return resp

    async def events(self) -> list[dict[str, Any]]:
        return list((await (await self.client.get("/v1/events")).json())["events"])


def b64(point: bytes) -> str:
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = ManualClock(datetime(2026, 11, 30, 9, tzinfo=ZoneInfo("America/Los_Angeles")))
    services, keystore, _ = services_with_phones(SITE, clock, {})
    async with TestClient(TestServer(create_app(services))) as client:
        csrf = await sign_in(client, keystore, clock)
        yield Rig(services, keystore, clock, client, csrf)


async def test_enrol_with_a_code_tap_then_revoke_on_the_next_tap(rig: Rig) -> None:
    code = await rig.code_for("bob")
    assert CODE_SHAPE.match(code), code
    phone = SimulatedPhone.create("bob-phone")
    radios = SimulatedRadios(rig.services.controller, rig.keystore, rig.clock,
                             rig.services.proximity, {"bob-phone": phone})
    try:
        before = await radios.nfc_tap("bob-phone", "front")
        assert before.reason is Reason.UNKNOWN_CREDENTIAL

        resp = await rig.enrol(code, phone)
        assert resp.status == 200
        body = await resp.json()
        reader = rig.keystore.reader_key()
        assert body == {"phone": "bob-phone", "user": "bob",
                        "reader_public_key": reader.public_key.hex(),
                        "reader_group_id": reader.group_id.hex(),
                        "reader_sub_id": reader.sub_id.hex()}
        tap = await radios.nfc_tap("bob-phone", "front")
        assert (tap.result, tap.reason, tap.user) == (Result.GRANTED, Reason.ACCESS_GRANTED, "bob")

        revoked = await rig.client.delete("/v1/phones/bob-phone",
                                          headers={"X-CSRF-Token": rig.csrf})
        assert revoked.status == 200
        assert await revoked.json() == {"phone": "bob-phone", "user": "bob", "revoked": True}
        after = await radios.nfc_tap("bob-phone", "front")
        assert (after.result, after.reason) == (Result.DENIED, Reason.UNKNOWN_CREDENTIAL)
    finally:
        await radios.close()

    again = await rig.client.delete("/v1/phones/bob-phone", headers={"X-CSRF-Token": rig.csrf})
    assert await error_of(again, 404) == "unknown_phone"
    changes = {e["kind"]: e["payload"] for e in await rig.events() if "payload" in e}
    assert changes["enrolment_code_issued"]["actor"] == "session:alice"
    assert changes["phone_enrolled"] == {**changes["phone_enrolled"], "phone": "bob-phone",
                                         "user": "bob", "actor": "session:alice",
                                         "via": "enrolment_code"}
    assert changes["phone_revoked"]["actor"] == "session:alice"
    assert code.replace("-", "") not in str(await rig.events())


async def test_a_code_is_single_use(rig: Rig) -> None:
    code = await rig.code_for("bob")
    assert (await rig.enrol(code, SimulatedPhone.create("bob-phone"))).status == 200
    replay = await rig.enrol(code, SimulatedPhone.create("bob-tablet"))
    assert replay.status == 401 and (await replay.json())["error"]["code"] == "code_used"
    assert rig.keystore.phone("bob-tablet") is None


async def test_an_expired_code_is_refused(rig: Rig) -> None:
    code = await rig.code_for("bob")
    rig.clock.advance(10 * 60 + 1)
    late = await rig.enrol(code, SimulatedPhone.create("bob-phone"))
    assert late.status == 401 and (await late.json())["error"]["code"] == "code_expired"


async def test_a_code_enrols_only_its_users_listed_phones(rig: Rig) -> None:
    """A code for bob cannot take alice's phone id; the refusal costs no code."""
    code = await rig.code_for("bob")
    taken = await rig.enrol(code, SimulatedPhone.create("alice-phone"))
    assert taken.status == 409 and (await taken.json())["error"]["code"] == "phone_not_listed"
    unlisted = await rig.enrol(code, SimulatedPhone.create("bob-watch"))
    assert unlisted.status == 409
    assert rig.keystore.phones() == []
    # Typed as people type it: lower case, spaces for dashes.
    typed = code.lower().replace("-", " ")
    assert (await rig.enrol(typed, SimulatedPhone.create("bob-tablet"))).status == 200


async def test_a_key_enrolled_for_another_phone_is_refused(rig: Rig) -> None:
    phone = SimulatedPhone.create("bob-phone")
    assert (await rig.enrol(await rig.code_for("bob"), phone)).status == 200
    twin = await rig.enrol(await rig.code_for("bob"), phone, phone="bob-tablet")
    assert twin.status == 409 and (await twin.json())["error"]["code"] == "key_in_use"


async def test_wrong_codes_are_counted_not_recorded_and_rate_limited(rig: Rig) -> None:
    events_before = len(await rig.events())
    phone = SimulatedPhone.create("bob-phone")
    good = await rig.code_for("bob")
    events_before += 1  # the code's own record
    for _ in range(10):
        wrong = await rig.enrol("0000-0000-0000-0000", phone)
        assert wrong.status == 401 and (await wrong.json())["error"]["code"] == "code_invalid"
    assert len(await rig.events()) == events_before  # no durable write for a guess
    limited = await rig.enrol(good, phone)  # even the right code, while limited
    assert limited.status == 429
    assert (await limited.json())["error"]["code"] == "too_many_attempts"
    assert limited.headers["Retry-After"] == str((await limited.json())["error"]["retry_after"])
    assert 1 <= int(limited.headers["Retry-After"]) <= 6
    metrics = await (await rig.client.get("/metrics")).text()
    name = "passbridge_one_time_code_failures_total"
    assert metric_sample(metrics, name, kind=ENROL, reason="unknown") == 10
    assert metric_sample(metrics, name, kind=ENROL, reason="rate_limited") == 1
    rig.clock.advance(6)
    assert (await rig.enrol(good, phone)).status == 200


async def test_malformed_enrolments_cost_no_code(rig: Rig) -> None:
    code = await rig.code_for("bob")
    phone = SimulatedPhone.create("bob-phone")
    point = phone.public_key_point
    for override in ({"public_key": b64(point[:-1])}, {"public_key": "not base64!"},
                     {"public_key": b64(b"\x04" + b"\x00" * 64)}, {"public_key": 5},
                     {"phone": ""}, {"phone": "a/b"}, {"code": "short"}, {"code": 12}):
        resp = await rig.enrol(code, phone, **override)
        assert resp.status == 400, override
        assert (await resp.json())["error"]["code"] == "malformed_body"
    assert (await rig.enrol(code, phone)).status == 200


async def test_enrolment_codes_only_from_site_admins_for_enrollable_users(rig: Rig) -> None:
    for user, status, error in (("nobody", 404, "unknown_user"), ("carol", 422, "cannot_enrol"),
                                ("dave", 422, "cannot_enrol")):
        resp = await rig.client.post(f"/v1/users/{user}/enrolments",
                                     headers={"X-CSRF-Token": rig.csrf})
        assert await error_of(resp, status) == error, user
    no_csrf = await rig.client.post("/v1/users/bob/enrolments")
    assert await error_of(no_csrf, 403) == "csrf_failed"
    async with aiohttp.ClientSession() as stranger:
        for method, path in (("POST", "/v1/users/bob/enrolments"),
                             ("DELETE", "/v1/phones/bob-phone")):
            resp = await stranger.request(method, str(rig.client.make_url(path)))
            assert resp.status == 401, path
