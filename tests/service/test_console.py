"""The console's server side in-process: its pages and assets (caching, CSP),
the plain-language table, the QR code, the doors' waiting steps, and the
/v1/sim routes the tester panel drives. The browser itself: tests/process/
test_console_browser.py."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from passbridge.adapters.keystore import MemoryKeyStore
from passbridge.clock import ManualClock
from passbridge.core.model import DoorState, Factor, Reason, Result
from passbridge.service.app import create_app
from passbridge.service.console import load_assets
from passbridge.service.console.reasons import (
    FACTOR_TEXT,
    REASON_TEXT,
    RESULT_TEXT,
    STATE_TEXT,
)
from passbridge.service.runtime import memory_services
from passbridge.sim.air import SimulatedAir
from tests.service_support import (
    MONDAY_10,
    Client,
    Keys,
    Rig,
    admin_token,
    error_of,
    make_site,
    sign_in,
)

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"



@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[tuple[Rig, Client]]:
    """The test site with simulated radios: their phones enrol themselves."""
    keys, clock = Keys(), ManualClock(MONDAY_10)
    keystore = MemoryKeyStore(clock=clock)
    services = memory_services(make_site(keys, keystore.pin_key()), clock=clock,
                               keystore=keystore)
    services.device_keys.ensure(services.site)
    r = Rig(keys, clock, keystore, services)
    air = SimulatedAir(r.services, tmp_path / "sim-phones")
    async with TestClient(TestServer(create_app(r.services, simulated=air))) as client:
        yield r, client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- plain language: one table, every enum value --------------------------------


def test_every_reason_state_result_and_factor_has_plain_words() -> None:
    assert set(REASON_TEXT) == set(Reason)
    assert set(STATE_TEXT) == set(DoorState)
    assert set(RESULT_TEXT) == set(Result)
    assert set(FACTOR_TEXT) == set(Factor)
    assert REASON_TEXT[Reason.PIN_REQUIRED] == "Entry code needed"
    assert all(text and text[0].isupper() for text in REASON_TEXT.values())


# --- pages and assets --------------------------------------------------------------


async def test_pages_are_revalidated_and_assets_cached_by_version(rig: tuple[Rig, Client]) -> None:
    _, client = rig
    version = load_assets().version
    page = await client.get("/console")
    assert page.status == 200 and page.content_type == "text/html"
    assert page.headers["Cache-Control"] == "no-cache"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    html = await page.text()
    assert f'src="/console/assets/{version}/main.js"' in html
    assert "<script>" not in html and " on" + "click=" not in html  # no inline script
    again = await client.get("/console", headers={"If-None-Match": page.headers["ETag"]})
    assert again.status == 304
    script = await client.get(f"/console/assets/{version}/main.js")
    assert script.status == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert "immutable" in script.headers["Cache-Control"]
    assert script.headers["Content-Security-Policy"] == csp
    # Every module the pages import is served under the same version.
    for name in re.findall(r'from "\./([\w-]+\.js)"', await script.text()):
        assert (await client.get(f"/console/assets/{version}/{name}")).status == 200, name
    old = await client.get("/console/assets/0123456789ab/main.js")
    assert await error_of(old, 404) == "not_found"
    missing = await client.get(f"/console/assets/{version}/nope.js")
    assert await error_of(missing, 404) == "not_found"
    sign_in = await client.get("/console/sign-in")
    assert f"/console/assets/{version}/sign-in.js" in await sign_in.text()
    slash = await client.get("/console/", allow_redirects=False)
    assert (slash.status, slash.headers["Location"]) == (301, "/console")


async def test_the_words_module_is_made_from_the_reason_table(rig: tuple[Rig, Client]) -> None:
    _, client = rig
    version = load_assets().version
    words = await (await client.get(f"/console/assets/{version}/words.js")).text()
    assert '"pin_required": "Entry code needed"' in words
    assert all(f'"{reason.value}"' in words for reason in Reason)


async def test_qr_code_is_svg_for_site_admins_only(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    body = {"text": '{"code":"ABCD-2345"}'}
    assert await error_of(await client.post("/console/qr", json=body), 401) == (
        "missing_credentials")
    bob = auth(admin_token(r.keys, r.clock, user="bob"))
    assert await error_of(await client.post("/console/qr", json=body, headers=bob), 403) == (
        "forbidden")
    resp = await client.post("/console/qr", json=body,
                             headers=auth(admin_token(r.keys, r.clock)))
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    svg = await resp.text()
    assert svg.startswith("<svg") and "<path" in svg and "<script" not in svg
    too_long = await client.post("/console/qr", json={"text": "x" * 513},
                                 headers=auth(admin_token(r.keys, r.clock)))
    assert await error_of(too_long, 400) == "malformed_body"


# --- doors: waiting entry-code steps ---------------------------------------------------


async def test_a_door_shows_the_card_waiting_for_its_code(rig: tuple[Rig, Client]) -> None:
    r, client = rig

    async def front() -> dict[str, Any]:
        resp = await client.get("/v1/doors/front", headers=auth(admin_token(r.keys, r.clock)))
        return dict(await resp.json())

    assert (await front())["pending"] == []
    card = await client.post("/v1/doors/front/card", json={"number": "10001"},
                             headers=auth(r.device("front", "reader")))
    assert (await card.json())["reason"] == "pin_required"
    door = await front()
    assert door["pending"] == [{"side": "in", "user": "alice", "factor": "card",
                                "seconds_left": 15}]
    r.clock.advance(16)  # past the door's 15 s entry-code timeout
    assert (await front())["pending"] == []


# --- the tester panel's /v1/sim routes ------------------------------------------------


async def test_sim_badge_and_keypad_drive_the_real_decisions(sim: tuple[Rig, Client]) -> None:
    r, client = sim
    reader = auth(r.device("front", "reader"))
    keypad = auth(r.device("front", "keypad"))
    card = await client.post("/v1/sim/doors/front/card", json={"number": "10001"},
                             headers=reader)
    assert (await card.json())["reason"] == "pin_required"
    # A keypad key is not a reader key, and the other way round.
    wrong = await client.post("/v1/sim/doors/front/keypad", json={"code": "2468"},
                              headers=reader)
    assert await error_of(wrong, 403) == "wrong_device"
    code = await client.post("/v1/sim/doors/front/keypad", json={"code": "2468"},
                             headers=keypad)
    decision = await code.json()
    assert (decision["result"], decision["reason"], decision["user"]) == (
        "granted", "two_factor_complete", "alice")
    bad = await client.post("/v1/sim/doors/front/keypad", json={"code": "12a"}, headers=keypad)
    assert await error_of(bad, 400) == "malformed_body"
    events = await r.services.audit.page(0, 10)
    assert [e["reason"] for e in events] == ["pin_required", "two_factor_complete"]


async def test_sim_nearby_is_verified_like_the_phones_own_request(
    sim: tuple[Rig, Client],
) -> None:
    r, client = sim
    reader = auth(r.device("front", "reader"))
    near = await client.post("/v1/sim/doors/front/nearby",
                             json={"phone": "alice-phone", "rssi": -50}, headers=reader)
    decision = await near.json()
    assert (decision["factor"], decision["user"], decision["reason"]) == (
        "nearby", "alice", "bypass_nearby")
    unseen = await client.post("/v1/sim/doors/front/nearby",
                               json={"phone": "alice-phone", "rssi": None}, headers=reader)
    assert (await unseen.json())["reason"] == "not_nearby"


async def test_sim_scenario_runs_in_its_own_rig(sim: tuple[Rig, Client]) -> None:
    r, client = sim
    key = auth(r.device("front", "reader"))
    text = (SCENARIOS / "lockdown-and-admin.yaml").read_bytes()
    resp = await client.post("/v1/sim/scenario", data=text, headers=key)
    report = await resp.json()
    assert resp.status == 200, report
    assert report["passed"] is True and report["name"].startswith("Lockdown")
    first = report["steps"][0]
    assert (first["index"], first["step"], first["result"], first["ok"]) == (
        0, "card lobby #10001", "granted", True)
    # Nothing of it reached this service's own audit log or doors.
    assert await r.services.audit.page(0, 10) == []
    broken = await client.post("/v1/sim/scenario", data=b"site: {id: hq}\nsteps: 3\n",
                               headers=key)
    problems = (await broken.json())["error"]["problems"]
    assert broken.status == 422 and problems
    assert all(p["place"] for p in problems)
    assert await error_of(await client.post("/v1/sim/scenario", data=text), 401) == (
        "missing_credentials")


# --- live streams for many consoles ------------------------------------------------


async def test_many_streams_cost_one_encoding_per_record_and_few_writes(
    rig: tuple[Rig, Client], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twenty consoles must not cost the doors twenty encodings and twenty
    writes per decision: a record is encoded once for all streams, and the
    records of a busy moment go out to each stream in one write."""
    import json as json_module

    from passbridge.service import routes_events

    r, client = rig
    encodings = 0
    dumps = json_module.dumps

    def counting_dumps(*args: Any, **kwargs: Any) -> str:
        nonlocal encodings
        encodings += 1
        return dumps(*args, **kwargs)

    writes: dict[int, int] = {}
    write = web.StreamResponse.write

    async def counting_write(self: web.StreamResponse, data: bytes) -> None:
        if b"event: decision" in data:
            writes[id(self)] = writes.get(id(self), 0) + 1
        await write(self, data)

    streams = [await client.get("/v1/events?stream=1", headers=auth(
        admin_token(r.keys, r.clock))) for _ in range(3)]
    monkeypatch.setattr(routes_events.json, "dumps", counting_dumps)
    monkeypatch.setattr(web.StreamResponse, "write", counting_write)
    # A wide write interval, so that however slow this machine is, the ten
    # decisions below all fall within one interval after the first write.
    monkeypatch.setattr(routes_events, "MIN_WRITE_INTERVAL", 2.0)

    async def badge() -> None:
        await client.post("/v1/doors/side/card", json={"number": "20002"},
                          headers=auth(r.device("side", "reader")))

    await badge()  # the first goes out at once ...
    await asyncio.gather(*(badge() for _ in range(10)))  # ... these right after, together
    for stream in streams:
        seen = 0
        while seen < 11:
            line = await asyncio.wait_for(stream.content.readline(), 10)
            seen += line.startswith(b"event: decision")
        stream.close()
    assert encodings == 11  # one per record, not one per record and stream
    # The first record at once, the ten in one more write (one spare for a
    # stall of more than 2 s); one write per record before.
    assert len(writes) == 3 and all(count <= 3 for count in writes.values()), writes


async def test_a_door_says_which_of_its_wired_readers_answer(rig: tuple[Rig, Client]) -> None:
    """The doors view's "readers online": wired (OSDP) readers as the running
    buses report them (here a stand-in bus: the status is all the API reads)."""
    from passbridge.core.model import Side
    from passbridge.service.osdp import ReaderStatus

    r, client = rig
    statuses = [ReaderStatus("front", Side.IN, "osdp0:1", True, 0.2),
                ReaderStatus("front", Side.OUT, "osdp0:2", False, None),
                ReaderStatus("side", Side.IN, "osdp0:3", True, 0.1)]
    r.services.metrics.watch_wired_readers(lambda: statuses)
    resp = await client.get("/v1/doors", headers=auth(admin_token(r.keys, r.clock)))
    doors = {d["id"]: d for d in (await resp.json())["doors"]}
    assert doors["front"]["wired_readers"] == [{"side": "in", "online": True},
                                               {"side": "out", "online": False}]
    assert doors["vault"]["wired_readers"] == []


async def test_a_site_admins_session_drives_the_tester_routes_with_its_csrf_token(
    sim: tuple[Rig, Client],
) -> None:
    """The console's tester panel has no device key: a site admin's session
    stands in for any door side's device, and each call carries the CSRF token."""
    r, client = sim
    csrf = await sign_in(client, r.keystore, r.clock)
    info = await client.get("/v1/sim")
    assert info.status == 200 and "alice-phone" in (await info.json())["phones"]
    tap = {"phone": "alice-phone"}
    refused = await client.post("/v1/sim/doors/front/nfc", json=tap)
    assert await error_of(refused, 403) == "csrf_failed"
    forged = await client.post("/v1/sim/doors/front/keypad", json={"code": "2468"},
                               headers={"X-CSRF-Token": csrf[:-1] + "x"})
    assert await error_of(forged, 403) == "csrf_failed"
    # Nothing refused was decided (the log holds only the sign-in).
    assert [e["kind"] for e in await r.services.audit.page(0, 10)] == ["session_started"]
    card = await client.post("/v1/sim/doors/front/card", json={"number": "10001"},
                             headers={"X-CSRF-Token": csrf})
    assert (await card.json())["reason"] == "pin_required"
    code = await client.post("/v1/sim/doors/front/keypad", json={"code": "2468"},
                             headers={"X-CSRF-Token": csrf})
    assert (await code.json())["reason"] == "two_factor_complete"
    # A user who is no site admin gets no session, so no tester either.
    client.session.cookie_jar.clear()
    assert await error_of(await client.get("/v1/sim"), 401) == "missing_credentials"
