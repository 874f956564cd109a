"""Listing and lifting lockouts over HTTP, as a site admin (token or session)."""

from __future__ import annotations

from datetime import timedelta

from tests.service_support import Client, Rig, admin_token, error_of, sign_in


def auth(r: Rig, user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token(r.keys, r.clock, user=user)}"}


async def lock_out_bob(r: Rig) -> None:
    controller = r.services.controller
    assert (await controller.card("front", "20002")).reason.value == "pin_required"
    for i in range(5):
        await controller.pin("front", f"{9000 + i}")
    assert (await controller.card("front", "20002")).reason.value == "locked_out"


async def test_list_and_clear_a_lockout(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    empty = await client.get("/v1/lockouts", headers=auth(r))
    assert (await empty.json())["users"] == []
    await lock_out_bob(r)
    for i in range(5):  # and the PIN-only keypad of the pad door
        await r.services.controller.pin("pad", f"{8000 + i}")
    listed = await (await client.get("/v1/lockouts", headers=auth(r))).json()
    until = (r.clock.now() + timedelta(seconds=60)).isoformat()
    assert listed["users"] == [{"user": "bob", "door": "front", "until": until,
                                "seconds_left": 60.0, "lockouts": 1}]
    assert listed["keypads"] == [{"side": "in", "door": "pad", "until": until,
                                  "seconds_left": 60.0, "lockouts": 1}]

    cleared = await client.delete("/v1/doors/front/lockouts/bob", headers=auth(r))
    assert cleared.status == 200
    assert await cleared.json() == {"door": "front", "user": "bob", "cleared": True}
    assert (await (await client.get("/v1/lockouts", headers=auth(r))).json())["users"] == []
    assert (await r.services.controller.card("front", "20002")).reason.value == "pin_required"
    events = (await (await client.get("/v1/events", headers=auth(r))).json())["events"]
    record = next(e for e in events if e["kind"] == "lockout_cleared")
    assert record["payload"] == {**record["payload"], "door": "front", "user": "bob",
                                 "actor": "app-backend:alice"}

    again = await client.delete("/v1/doors/front/lockouts/bob", headers=auth(r))
    assert await error_of(again, 404) == "not_locked_out"
    nowhere = await client.delete("/v1/doors/nowhere/lockouts/bob", headers=auth(r))
    assert await error_of(nowhere, 404) == "unknown_door"


async def test_only_site_admins_and_with_csrf(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    await lock_out_bob(r)
    bob = await client.delete("/v1/doors/front/lockouts/bob", headers=auth(r, "bob"))
    assert await error_of(bob, 403) == "forbidden"
    assert await error_of(await client.get("/v1/lockouts"), 401) == "missing_credentials"
    csrf = await sign_in(client, r.keystore, r.clock)
    forged = await client.delete("/v1/doors/front/lockouts/bob")
    assert await error_of(forged, 403) == "csrf_failed"
    assert len((await (await client.get("/v1/lockouts")).json())["users"]) == 1
    ok = await client.delete("/v1/doors/front/lockouts/bob", headers={"X-CSRF-Token": csrf})
    assert ok.status == 200
    events = (await (await client.get("/v1/events")).json())["events"]
    assert [e["payload"]["actor"] for e in events if e["kind"] == "lockout_cleared"] == [
        "session:alice"]
