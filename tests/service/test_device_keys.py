"""Per-device keys: one per wired reader and keypad side, each good for its own
door side and kind only, sealed at rest, rotatable; and the simulated radios'
routes, which take the key of the door side they drive.

Every HTTP check goes through a real aiohttp server on loopback.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from passbridge.adapters.keystore import DeviceKind, MemoryKeyStore, SqliteKeyStore
from passbridge.clock import ManualClock
from passbridge.core.model import Side
from passbridge.service.app import create_app
from passbridge.service.device_keys import DeviceKeys, device_slots
from passbridge.service.runtime import memory_services
from passbridge.sim.air import SimulatedAir
from passbridge.site_file import parse_site
from tests.service_support import MONDAY_10, Client, Keys, make_site

# garage: reader + keypad; lab: In/Out with a keypad (on the entry side); lobby: reader only.
SITE = {
    "site": {"id": "hq", "timezone": "UTC"},
    "doors": [
        {"id": "front", "reader": True, "keypad": True},
        {"id": "garage", "reader": True, "keypad": True},
        {"id": "lab", "reader": True, "keypad": True, "in_out": True},
        {"id": "lobby", "reader": True, "keypad": False},
    ],
    "users": [
        {"id": "alice", "cards": ["10001"], "pin": "2468", "doors": "all"},
    ],
}


def slot(door: str, side: str, kind: str) -> tuple[str, Side, DeviceKind]:
    return (door, Side(side), DeviceKind(kind))


class Site:
    """The SITE above behind a real server, with its device keys made as serve makes them."""

    def __init__(self, client: Client, keystore: MemoryKeyStore) -> None:
        self.client = client
        self.keystore = keystore

    def key(self, door: str, side: str, kind: str) -> str:
        wanted = slot(door, side, kind)
        return next(k.token for k in self.keystore.device_keys() if k.slot == wanted)

    async def post(self, path: str, token: str | None, body: dict[str, Any]) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        resp = await self.client.post(path, json=body, headers=headers)
        return resp.status, await resp.json()


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    clock = ManualClock(MONDAY_10)
    keystore = MemoryKeyStore(clock=clock)
    services = memory_services(parse_site(SITE, file="site.yaml", pin_key=keystore.pin_key()),
                               clock=clock, keystore=keystore)
    services.device_keys.ensure(services.site)
    async with TestClient(TestServer(create_app(services))) as client:
        yield Site(client, keystore)


def code_of(status: int, body: Any) -> tuple[int, str]:
    return status, body["error"]["code"]


# --- which keys exist, and how they are kept ---------------------------------------


def test_one_key_per_wired_device_side() -> None:
    keystore = MemoryKeyStore()
    parsed = parse_site(SITE, file="site.yaml", pin_key=keystore.pin_key())
    assert sorted(device_slots(parsed)) == sorted([
        slot("front", "in", "reader"), slot("front", "in", "keypad"),
        slot("garage", "in", "reader"), slot("garage", "in", "keypad"),
        slot("lab", "in", "reader"), slot("lab", "out", "reader"), slot("lab", "in", "keypad"),
        slot("lobby", "in", "reader"),
    ])
    made = DeviceKeys(keystore).ensure(parsed)
    assert len(made) == 8 and len({k.id for k in made}) == 8
    assert len({k.secret for k in made}) == 8
    assert DeviceKeys(keystore).ensure(parsed) == []  # the next start makes none
    assert all(k.secret not in repr(k) for k in made)


def test_keys_are_sealed_at_rest_and_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "pb.sqlite3"
    with SqliteKeyStore(db) as store:
        made = store.ensure_device_keys([slot("garage", "in", "keypad"),
                                         slot("front", "in", "reader")])
    with sqlite3.connect(db) as raw:
        stored = b"".join(bytes(r[0]) for r in raw.execute("SELECT secret FROM ks_device_keys"))
    assert all(k.secret.encode() not in stored for k in made)
    assert db.read_bytes().find(made[0].secret.encode()) == -1
    with SqliteKeyStore(db) as again:
        assert again.ensure_device_keys([slot("garage", "in", "keypad")]) == []
        assert {k.token for k in again.device_keys()} == {k.token for k in made}
        rotated = again.rotate_device_key(slot("garage", "in", "keypad"))
        assert rotated is not None and rotated.token not in {k.token for k in made}
        assert again.device_key(made[0].id) is None
        assert again.rotate_device_key(slot("nowhere", "in", "keypad")) is None


# --- wired routes --------------------------------------------------------------------


async def test_the_garage_keypad_key_speaks_only_for_the_garage_keypad(site: Site) -> None:
    garage_keypad = site.key("garage", "in", "keypad")
    # Its own keypad, entry side (default side: the key's own): decided, door and side kept.
    status, body = await site.post("/v1/doors/garage/keypad", garage_keypad, {"code": "2468"})
    assert status == 200 and (body["door"], body["side"], body["result"]) == (
        "garage", "in", "granted")
    # Another door's keypad, a card read, the exit side: authenticated, not allowed.
    refused = [
        await site.post("/v1/doors/front/keypad", garage_keypad, {"code": "2468"}),
        await site.post("/v1/doors/garage/card", garage_keypad, {"number": "10001"}),
        await site.post("/v1/doors/garage/keypad", garage_keypad,
                        {"code": "2468", "side": "out"}),
        await site.post("/v1/doors/lab/keypad", garage_keypad, {"code": "2468"}),
    ]
    assert [code_of(*r) for r in refused] == [(403, "wrong_device")] * 4


async def test_exit_reader_and_entry_reader_have_their_own_keys(site: Site) -> None:
    exit_reader = site.key("lab", "out", "reader")
    status, body = await site.post("/v1/doors/lab/card", exit_reader, {"number": "10001"})
    assert status == 200 and (body["side"], body["result"]) == ("out", "granted")
    entry = await site.post("/v1/doors/lab/card", exit_reader,
                            {"number": "10001", "side": "in"})
    assert code_of(*entry) == (403, "wrong_device")
    keypad = await site.post("/v1/doors/lab/keypad", site.key("lab", "in", "reader"),
                             {"code": "2468"})
    assert code_of(*keypad) == (403, "wrong_device")


async def test_unknown_or_forged_keys_are_401(site: Site) -> None:
    real = site.key("front", "in", "reader")
    key_id, _, secret = real.partition(".")
    other_secret = site.key("garage", "in", "reader").partition(".")[2]
    for token in (None, "no-dot-at-all", f"{key_id}.{secret}x", f"{key_id}.{other_secret}",
                  f"dk-0000000000000000.{secret}", f"{key_id}.", "." + secret, real * 8):
        status, body = await site.post("/v1/doors/front/card", token, {"number": "10001"})
        assert status == 401, (token, body)
        assert body["error"]["code"] in ("missing_credentials", "bad_device_key")
    metrics = await (await site.client.get("/metrics")).text()
    assert re.search(r'passbridge_token_failures_total\{path="device",reason="token_invalid"\} '
                     r'[1-9]', metrics), metrics


async def test_no_door_enumeration_with_a_device_key(site: Site) -> None:
    """A valid key learns nothing about which doors exist: 403 for any door
    not its own, never 404; without a key, 401 for a door that exists or not."""
    key = site.key("garage", "in", "reader")
    assert code_of(*await site.post("/v1/doors/nope/card", key, {"number": "1"})) == (
        403, "wrong_device")
    assert code_of(*await site.post("/v1/doors/nope/card", None, {"number": "1"})) == (
        401, "missing_credentials")
    assert code_of(*await site.post("/v1/doors/nope/card", "dk-1.x", {"number": "1"})) == (
        401, "bad_device_key")


async def test_a_rotated_key_stops_working_at_once(site: Site) -> None:
    old = site.key("garage", "in", "keypad")
    assert (await site.post("/v1/doors/garage/keypad", old, {"code": "2468"}))[0] == 200
    rotated = site.keystore.rotate_device_key(slot("garage", "in", "keypad"))
    assert rotated is not None
    assert code_of(*await site.post("/v1/doors/garage/keypad", old, {"code": "2468"})) == (
        401, "bad_device_key")
    status, _ = await site.post("/v1/doors/garage/keypad", rotated.token, {"code": "2468"})
    assert status == 200


# --- simulated radios ------------------------------------------------------------------


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[tuple[Client, MemoryKeyStore]]:
    """The test site (front: two-factor; side: reader only) with simulated radios."""
    clock = ManualClock(MONDAY_10)
    keystore = MemoryKeyStore(clock=clock)
    services = memory_services(make_site(Keys(), keystore.pin_key()), clock=clock,
                               keystore=keystore)
    services.device_keys.ensure(services.site)
    air = SimulatedAir(services, tmp_path / "sim-phones")
    async with TestClient(TestServer(create_app(services, simulated=air))) as client:
        yield client, keystore


def token_of(keystore: MemoryKeyStore, door: str, side: str, kind: str) -> str:
    return next(k.token for k in keystore.device_keys() if k.slot == slot(door, side, kind))


async def test_sim_routes_take_the_key_of_the_door_side_they_drive(
    sim: tuple[Client, MemoryKeyStore], tmp_path: Path
) -> None:
    client, keystore = sim
    side_reader = token_of(keystore, "side", "in", "reader")
    bodies: list[str] = []

    async def call(method: str, path: str, token: str | None,
                   body: dict[str, Any] | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = await client.request(method, path, json=body, headers=headers)
        bodies.append(await resp.text())
        return resp.status, await resp.json()

    tap = {"phone": "alice-phone"}
    assert code_of(*await call("POST", "/v1/sim/doors/side/nfc", None, tap)) == (
        401, "missing_credentials")
    assert code_of(*await call("POST", "/v1/sim/doors/side/nfc", "dk-1.nope", tap)) == (
        401, "bad_device_key")
    for wrong in (token_of(keystore, "front", "in", "reader"),
                  token_of(keystore, "front", "in", "keypad")):
        assert code_of(*await call("POST", "/v1/sim/doors/side/nfc", wrong, tap)) == (
            403, "wrong_device")
        assert code_of(*await call("POST", "/v1/sim/doors/side/ble", wrong,
                                   {**tap, "rssi": -50})) == (403, "wrong_device")
        assert code_of(*await call("POST", "/v1/sim/phones/alice-phone/advertise", wrong,
                                   {"rssi": -60, "door": "side"})) == (403, "wrong_device")
    assert code_of(*await call("POST", "/v1/sim/doors/side/nfc", side_reader,
                               {**tap, "side": "out"})) == (403, "wrong_device")
    assert code_of(*await call("GET", "/v1/sim", None)) == (401, "missing_credentials")

    status, decision = await call("POST", "/v1/sim/doors/side/nfc", side_reader, tap)
    assert status == 200 and (decision["door"], decision["result"]) == ("side", "granted")
    status, decision = await call("POST", "/v1/sim/doors/side/ble", side_reader,
                                  {**tap, "rssi": -50})
    assert status == 200 and decision["factor"] == "ble"
    status, advert = await call("POST", "/v1/sim/phones/alice-phone/advertise", side_reader,
                                {"rssi": -60})
    assert status == 200 and set(advert) == {"adv"}
    status, info = await call("GET", "/v1/sim", side_reader)
    assert status == 200 and info["phones"] == ["alice-phone", "bob-phone"]
    # Errors under /v1/sim too: an unknown phone, a bad body.
    assert (await call("POST", "/v1/sim/doors/side/nfc", side_reader, {"phone": "x"}))[0] == 404
    assert (await call("POST", "/v1/sim/doors/side/ble", side_reader,
                       {**tap, "rssi": "loud"}))[0] == 400

    # Nothing under /v1/sim says where anything lives on disk.
    assert (tmp_path / "sim-phones" / "alice-phone.pem").exists()
    for text in bodies:
        assert str(tmp_path) not in text and "sim-phones" not in text and ".pem" not in text
        assert not re.search(r"(^|[\s\"'(])/[A-Za-z0-9_.-]+/", text), text
