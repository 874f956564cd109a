"""Every route and every error of the HTTP API, through aiohttp's own test client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from passbridge.core.model import Factor, Side
from passbridge.core.tokens import p256_point
from passbridge.protocol.ble_advert import format_adv_id
from passbridge.service.openapi import document, documented_operations, routed_operations
from tests.service_support import (
    Client,
    Rig,
    admin_token,
    bridge_minter,
    error_of,
    make_rig,
    metric_sample,
    nearby_token,
    phone_adv,
    remote_token,
)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- remote unlock ----------------------------------------------------------


async def test_remote_unlock_by_permitted_user_bypasses_two_factor(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    resp = await client.post("/v1/doors/front/remote-unlock",
                             headers=auth(remote_token(r.keys, r.clock, "front", "carol")))
    assert resp.status == 200
    body = await resp.json()
    assert (body["result"], body["reason"], body["user"]) == ("granted", "bypass_remote", "carol")
    assert body["state"] == "two_factor" and body["unlock_seconds"] == 5
    assert {"decision_id", "door", "side", "state_source", "at"} <= set(body)


async def test_remote_unlock_denials_are_decisions(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    cases = [("bob", "front", "remote_not_permitted"), ("carol", "pad", "no_access"),
             ("nobody", "side", "unknown_credential"), ("alice", "vault", "bypass_disabled")]
    for user, door, reason in cases:
        resp = await client.post(f"/v1/doors/{door}/remote-unlock",
                                 headers=auth(remote_token(r.keys, r.clock, door, user)))
        assert resp.status == 200
        body = await resp.json()
        assert (body["result"], body["reason"]) == ("denied", reason), (user, door)


async def test_remote_unlock_on_locked_door_only_for_site_admin(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    resp = await client.put("/v1/site/lockdown", json={"active": True},
                            headers=auth(admin_token(r.keys, r.clock)))
    assert resp.status == 200 and (await resp.json())["site"] is True
    carol = await client.post("/v1/doors/side/remote-unlock",
                              headers=auth(remote_token(r.keys, r.clock, "side", "carol")))
    assert (await carol.json())["reason"] == "lockdown"
    alice = await client.post("/v1/doors/side/remote-unlock",
                              headers=auth(remote_token(r.keys, r.clock, "side", "alice")))
    body = await alice.json()
    assert (body["result"], body["state_source"]) == ("granted", "lockdown")


async def test_remote_unlock_unknown_door_is_404(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    resp = await client.post("/v1/doors/nowhere/remote-unlock",
                             headers=auth(remote_token(r.keys, r.clock, "nowhere")))
    assert await error_of(resp, 404) == "unknown_door"


async def test_remote_unlock_without_bearer_is_401(rig: tuple[Rig, Client]) -> None:
    _, client = rig
    resp = await client.post("/v1/doors/front/remote-unlock")
    assert await error_of(resp, 401) == "missing_credentials"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


# --- nearby ------------------------------------------------------------------


async def _nearby(r: Rig, client: Client, cred: str, door: str, adv: bytes | None = None) -> Any:
    adv = phone_adv(r, cred) if adv is None else adv
    token = nearby_token(r.keys.phones[cred], r.clock, cred=cred, door=door,
                         adv=format_adv_id(adv))
    return await client.post(f"/v1/doors/{door}/nearby-unlock", data=token,
                             headers={"Content-Type": "application/jwt"})


def heard(r: Rig, door: str, cred: str, rssi: int, side: Side = Side.IN) -> bytes:
    """The radio at ``door``/``side`` hears ``cred``'s phone now."""
    adv = phone_adv(r, cred)
    r.services.proximity.radio(door, side).observe(adv, rssi)
    return adv


async def test_nearby_unlock_needs_fresh_proximity(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    unseen = await (await _nearby(r, client, "bob-phone", "front")).json()
    assert (unseen["result"], unseen["reason"]) == ("denied", "not_nearby")
    heard(r, "front", "bob-phone", -70)
    r.clock.advance(2)
    seen = await (await _nearby(r, client, "bob-phone", "front")).json()
    assert (seen["result"], seen["reason"], seen["user"]) == ("granted", "bypass_nearby", "bob")
    r.clock.advance(11)
    stale = await (await _nearby(r, client, "bob-phone", "front")).json()
    assert stale["reason"] == "not_nearby"


async def test_nearby_weak_signal_is_not_nearby(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    heard(r, "side", "bob-phone", -85)
    body = await (await _nearby(r, client, "bob-phone", "side")).json()
    assert body["reason"] == "not_nearby"


async def test_nearby_from_unenrolled_phone_is_401(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    from tests.service_support import _p256

    r.keys.phones["stranger"] = _p256()
    resp = await _nearby(r, client, "stranger", "side")
    assert await error_of(resp, 401) == "token_invalid"


async def test_nearby_from_revoked_phone_is_a_recorded_denial(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    heard(r, "side", "bob-phone", -60)
    r.keystore.revoke_phone("bob-phone")
    body = await (await _nearby(r, client, "bob-phone", "side")).json()
    assert (body["result"], body["reason"], body["credential"]) == (
        "denied", "unknown_credential", "bob-phone")
    events = await r.services.audit.page(0, 10)
    assert events[-1]["decision_id"] == body["decision_id"]


async def test_nearby_signed_by_another_phone_key_is_401(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    heard(r, "side", "bob-phone", -60)
    token = nearby_token(r.keys.phones["alice-phone"], r.clock, cred="bob-phone", door="side",
                         adv=format_adv_id(phone_adv(r, "bob-phone")))
    resp = await client.post("/v1/doors/side/nearby-unlock", data=token)
    assert await error_of(resp, 401) == "token_invalid"


async def test_nearby_for_another_door_and_replay_are_401(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    heard(r, "side", "bob-phone", -60)
    token = nearby_token(r.keys.phones["bob-phone"], r.clock, cred="bob-phone", door="side",
                         adv=format_adv_id(phone_adv(r, "bob-phone")))
    other = await client.post("/v1/doors/front/nearby-unlock", data=token)
    assert await error_of(other, 401) == "token_invalid"
    first = await client.post("/v1/doors/side/nearby-unlock", json={"token": token})
    assert (await first.json())["result"] == "granted"
    again = await client.post("/v1/doors/side/nearby-unlock", data=token)
    assert await error_of(again, 401) == "token_replayed"


async def test_nearby_expired_or_not_yet_valid_is_401(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    heard(r, "side", "bob-phone", -60)
    late = nearby_token(r.keys.phones["bob-phone"], r.clock, cred="bob-phone", door="side",
                        adv=format_adv_id(phone_adv(r, "bob-phone")))
    r.clock.advance(36)  # 30 s lifetime + 5 s leeway, and one more
    heard(r, "side", "bob-phone", -60)
    resp = await client.post("/v1/doors/side/nearby-unlock", data=late)
    assert await error_of(resp, 401) == "token_expired"
    now = int(r.clock.now().timestamp())
    early = nearby_token(r.keys.phones["bob-phone"], r.clock, cred="bob-phone", door="side",
                         adv=format_adv_id(phone_adv(r, "bob-phone")), iat=now + 60, exp=now + 90)
    resp = await client.post("/v1/doors/side/nearby-unlock", data=early)
    assert await error_of(resp, 401) == "token_invalid"
    too_long = nearby_token(r.keys.phones["bob-phone"], r.clock, cred="bob-phone",
                            door="side", adv=format_adv_id(phone_adv(r, "bob-phone")),
                            exp=now + 3600)
    resp = await client.post("/v1/doors/side/nearby-unlock", data=too_long)
    assert await error_of(resp, 401) == "token_invalid"


# --- factor tokens, card, keypad ------------------------------------------------


async def test_factor_token_from_trusted_bridge(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    token = bridge_minter(r.keys, r.clock).mint(
        user="bob", door="front", side=Side.IN, factor=Factor.NFC, credential="bob-phone")
    body = await (await client.post("/v1/factors", data=token)).json()
    assert (body["result"], body["reason"]) == ("pending", "pin_required")
    pin = await client.post("/v1/doors/front/keypad", json={"code": "1357"},
                            headers=auth(r.device("front", "keypad")))
    assert (await pin.json())["reason"] == "two_factor_complete"


async def test_card_and_keypad_need_the_device_key(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    resp = await client.post("/v1/doors/side/card", json={"number": "20002"})
    assert await error_of(resp, 401) == "missing_credentials"
    resp = await client.post("/v1/doors/side/card", json={"number": "20002"},
                             headers=auth("not-the-device-key-at-all"))
    assert await error_of(resp, 401) == "bad_device_key"
    ok = await client.post("/v1/doors/side/card", json={"number": "20002"},
                           headers=auth(r.device("side", "reader")))
    body = await ok.json()
    assert (body["result"], body["user"], body["credential"]) == ("granted", "bob", "****2")


async def test_card_then_pin_on_two_factor_door(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    card = await client.post("/v1/doors/front/card", json={"number": "10001"},
                             headers=auth(r.device("front", "reader")))
    assert (await card.json())["reason"] == "pin_required"
    wrong = await client.post("/v1/doors/front/keypad", json={"code": "1357"},
                              headers=auth(r.device("front", "keypad")))
    assert (await wrong.json())["reason"] == "pin_incorrect"
    # The keypad is on the entry side: its key cannot speak for the exit side.
    pin = await client.post("/v1/doors/front/keypad", json={"code": "1111", "side": "out"},
                            headers=auth(r.device("front", "keypad")))
    assert await error_of(pin, 403) == "wrong_device"


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'{"number": 5}', b'{"number": ""}', b'{"number": "1", "side": "up"}',
])
async def test_card_malformed_bodies_are_400(rig: tuple[Rig, Client], body: bytes) -> None:
    r, client = rig
    resp = await client.post("/v1/doors/side/card", data=body,
                             headers=auth(r.device("side", "reader")))
    assert await error_of(resp, 400) == "malformed_body"


async def test_keypad_code_must_be_digits(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    resp = await client.post("/v1/doors/pad/keypad", json={"code": "12a4"},
                             headers=auth(r.device("pad", "keypad")))
    assert await error_of(resp, 400) == "malformed_body"


# --- admin ---------------------------------------------------------------------


async def test_doors_list_and_one_door(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    resp = await client.get("/v1/doors", headers=auth(admin_token(r.keys, r.clock)))
    doors = {d["id"]: d for d in (await resp.json())["doors"]}
    assert set(doors) == {"front", "side", "vault", "pad"}
    assert (doors["front"]["state"], doors["front"]["state_source"]) == (
        "two_factor", "schedule:always")
    one = await client.get("/v1/doors/side", headers=auth(admin_token(r.keys, r.clock)))
    assert (await one.json())["state"] == "access_controlled"
    missing = await client.get("/v1/doors/nope", headers=auth(admin_token(r.keys, r.clock)))
    assert await error_of(missing, 404) == "unknown_door"


async def test_admin_calls_need_a_site_admin(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    no_role = await client.get("/v1/doors", headers=auth(admin_token(r.keys, r.clock, role="x")))
    assert await error_of(no_role, 403) == "forbidden"
    not_admin = await client.get("/v1/doors", headers=auth(admin_token(r.keys, r.clock, "bob")))
    assert await error_of(not_admin, 403) == "forbidden"
    anonymous = await client.put("/v1/site/lockdown", json={"active": True})
    assert await error_of(anonymous, 401) == "missing_credentials"
    assert r.services.core.lockdown() == (False, frozenset())


async def test_override_is_applied_audited_and_cleared(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    resp = await client.put("/v1/doors/front/override", json={"state": "unlocked", "minutes": 10},
                            headers=auth(admin_token(r.keys, r.clock)))
    body = await resp.json()
    assert (body["state"], body["state_source"]) == ("unlocked", "override")
    assert body["override"]["state"] == "unlocked"
    cleared = await client.put("/v1/doors/front/override", json={"state": None},
                               headers=auth(admin_token(r.keys, r.clock)))
    assert (await cleared.json())["state_source"] == "schedule:always"
    changes = [e for e in await r.services.audit.page(0, 100) if e["kind"] == "override"]
    assert [c["payload"]["state"] for c in changes] == ["unlocked", None]
    assert changes[0]["payload"]["actor"] == "app-backend:alice"


async def test_two_factor_override_without_keypad_is_422(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    resp = await client.put("/v1/doors/side/override", json={"state": "two_factor", "minutes": 5},
                            headers=auth(admin_token(r.keys, r.clock)))
    assert await error_of(resp, 422) == "invalid_configuration"
    body = await resp.json()
    assert "keypad" in body["error"]["message"] and "side" in body["error"]["message"]
    assert r.services.core.override("side") is None


@pytest.mark.parametrize("payload", [
    {"state": "open", "minutes": 5}, {"state": "unlocked"}, {"state": "unlocked", "minutes": "5"},
])
async def test_override_bad_bodies_are_400(rig: tuple[Rig, Client], payload: Any) -> None:
    r, client = rig
    resp = await client.put("/v1/doors/front/override", json=payload,
                            headers=auth(admin_token(r.keys, r.clock)))
    assert await error_of(resp, 400) == "malformed_body"


async def test_override_minutes_out_of_range_is_422(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    resp = await client.put("/v1/doors/front/override", json={"state": "locked", "minutes": -1},
                            headers=auth(admin_token(r.keys, r.clock)))
    assert await error_of(resp, 422) == "invalid_configuration"


async def test_door_lockdown_and_bad_lockdown_bodies(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    resp = await client.put("/v1/site/lockdown", json={"active": True, "door": "side"},
                            headers=auth(admin_token(r.keys, r.clock)))
    assert await resp.json() == {"site": False, "doors": ["side"]}
    bad = await client.put("/v1/site/lockdown", json={"active": "yes"},
                           headers=auth(admin_token(r.keys, r.clock)))
    assert await error_of(bad, 400) == "malformed_body"
    unknown = await client.put("/v1/site/lockdown", json={"active": True, "door": "x"},
                               headers=auth(admin_token(r.keys, r.clock)))
    assert await error_of(unknown, 404) == "unknown_door"
    card = await client.post("/v1/doors/side/card", json={"number": "10001"},
                             headers=auth(r.device("side", "reader")))
    assert (await card.json())["reason"] == "lockdown"


# --- events ----------------------------------------------------------------------


async def test_events_paged(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    for _ in range(3):
        await client.post("/v1/doors/side/card", json={"number": "20002"},
                          headers=auth(r.device("side", "reader")))
    first = await (await client.get("/v1/events?limit=2",
                                    headers=auth(admin_token(r.keys, r.clock)))).json()
    assert [e["seq"] for e in first["events"]] == [1, 2]
    rest = await (await client.get(f"/v1/events?after={first['next_after']}",
                                   headers=auth(admin_token(r.keys, r.clock)))).json()
    assert [e["seq"] for e in rest["events"]] == [3]
    assert rest["events"][0]["kind"] == "decision" and rest["events"][0]["user"] == "bob"
    for query in ("limit=0", "limit=5000", "after=-1", "after=x"):
        bad = await client.get(f"/v1/events?{query}", headers=auth(admin_token(r.keys, r.clock)))
        assert await error_of(bad, 400) == "bad_query"


async def test_events_live_stream(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    await client.post("/v1/doors/side/card", json={"number": "20002"},
                      headers=auth(r.device("side", "reader")))
    resp = await client.get("/v1/events", headers={
        **auth(admin_token(r.keys, r.clock)), "Accept": "text/event-stream"})
    assert resp.status == 200 and resp.content_type == "text/event-stream"

    async def next_event() -> dict[str, Any]:
        fields: dict[str, str] = {}
        while True:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if not line:
                if fields:
                    return {"id": int(fields["id"]), "event": fields["event"],
                            "data": json.loads(fields["data"])}
                continue
            key, _, value = line.partition(": ")
            fields[key] = value

    backlog = await asyncio.wait_for(next_event(), 5)
    assert (backlog["id"], backlog["event"]) == (1, "decision")
    await client.put("/v1/site/lockdown", json={"active": True},
                     headers=auth(admin_token(r.keys, r.clock)))
    live = await asyncio.wait_for(next_event(), 5)
    assert (live["id"], live["event"]) == (2, "lockdown")
    assert live["data"]["payload"]["active"] is True
    resp.close()


# --- health, metrics, openapi, errors ---------------------------------------------------


async def test_healthz_and_metrics(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["site"] == "hq"
    await client.post("/v1/doors/side/card", json={"number": "20002"},
                      headers=auth(r.device("side", "reader")))
    await client.post("/v1/factors", data="a.b.c")  # unverified: counted, not decided
    await client.post("/v1/doors/side/remote-unlock", headers=auth("x.y.z"))
    text = await (await client.get("/metrics")).text()
    decisions = "passbridge_decisions_total"
    assert metric_sample(text, decisions, result="granted", reason="access_granted") == 1
    assert not [line for line in text.splitlines()
                if line.startswith(decisions) and 'reason="token_invalid"' in line]
    failures = "passbridge_token_failures_total"
    assert metric_sample(text, failures, path="remote", reason="token_invalid") == 1
    assert metric_sample(text, failures, path="factor", reason="token_invalid") == 1
    assert metric_sample(text, "passbridge_decision_seconds_count") == 1
    assert metric_sample(text, "passbridge_decision_seconds_bucket", le="+Inf") == 1


async def test_openapi_matches_the_routes(rig: tuple[Rig, Client]) -> None:
    _, client = rig
    served = await (await client.get("/v1/openapi.json")).json()
    assert served == json.loads(json.dumps(document()))
    assert documented_operations(served) == routed_operations(client.server.app)


async def test_unknown_route_wrong_method_and_too_large(rig: tuple[Rig, Client]) -> None:
    _, client = rig
    assert await error_of(await client.get("/v1/nothing"), 404) == "not_found"
    wrong = await client.delete("/v1/doors")
    assert await error_of(wrong, 405) == "method_not_allowed"
    big = await client.post("/v1/factors", data=b"a" * (70 * 1024))
    assert await error_of(big, 413) == "request_too_large"
    empty = await client.post("/v1/factors", data=b"")
    assert await error_of(empty, 400) == "malformed_body"


async def test_internal_fault_is_json_500_without_trace(rig: tuple[Rig, Client]) -> None:
    r, client = rig

    def broken(_credential: str) -> None:
        raise RuntimeError("secret internals")

    r.keystore.phone = broken  # type: ignore[method-assign]
    token = nearby_token(r.keys.phones["bob-phone"], r.clock, cred="bob-phone", door="side",
                         adv=format_adv_id(phone_adv(r, "bob-phone")))
    resp = await client.post("/v1/doors/side/nearby-unlock", data=token)
    # The verifier turns any surprise into a refusal: never a grant, never a trace.
    assert resp.status in (401, 500)
    assert "secret internals" not in await resp.text()


async def test_phone_key_point_helper_round_trip() -> None:
    r = make_rig()
    enrolment = r.keystore.phone("bob-phone")
    assert enrolment is not None
    assert enrolment.public_key == p256_point(r.keys.phones["bob-phone"])
