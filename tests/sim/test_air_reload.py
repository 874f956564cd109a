"""The simulated air follows a live reload: a phone the new site file adds
gets its simulated twin, enrolled, and taps like the others."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from aiohttp.test_utils import TestClient, TestServer

from passbridge.adapters.keystore import DeviceKind, MemoryKeyStore
from passbridge.clock import ManualClock
from passbridge.core.model import Side
from passbridge.core.tokens import public_key_to_pem
from passbridge.service.app import create_app
from passbridge.service.runtime import memory_services
from passbridge.service.site_reload import reload_site
from passbridge.sim.air import SimulatedAir
from passbridge.site_file import parse_site
from tests.service_support import MONDAY_10, Keys, site_document


async def test_a_phone_added_by_a_reload_can_tap(tmp_path: Path) -> None:
    keys, clock = Keys(), ManualClock(MONDAY_10)
    keystore = MemoryKeyStore(clock=clock)
    doc = site_document(public_key_to_pem(keys.backend), public_key_to_pem(keys.bridge))
    services = memory_services(parse_site(doc, file="site.yaml", pin_key=keystore.pin_key()),
                               clock=clock, keystore=keystore)
    services.device_keys.ensure(services.site)
    reader = next(k.token for k in keystore.device_keys()
                  if k.slot == ("side", Side.IN, DeviceKind.READER))
    air = SimulatedAir(services, tmp_path / "sim-phones")
    async with TestClient(TestServer(create_app(services, simulated=air))) as client:
        async def tap(phone: str) -> tuple[int, dict[str, object]]:
            resp = await client.post("/v1/sim/doors/side/nfc", json={"phone": phone},
                                     headers={"Authorization": f"Bearer {reader}"})
            return resp.status, await resp.json()

        status, _ = await tap("carol-phone")
        assert status != 200  # no such phone yet
        new = copy.deepcopy(doc)
        next(u for u in new["users"] if u["id"] == "carol")["phones"] = ["carol-phone"]
        outcome = await reload_site(services, yaml.safe_dump(new), source="api", actor="test")
        status, decision = await tap("carol-phone")
        assert status == 200, decision
        assert (decision["result"], decision["user"], decision["revision"]) == (
            "granted", "carol", outcome.new_revision)
        assert keystore.phone("carol-phone") is not None


async def test_a_reload_with_simulated_wired_readers_on_the_radios(tmp_path: Path) -> None:
    """``serve --simulate`` puts the simulated OSDP readers on the radios
    beside the panels that drive them; a reload (PUT /v1/site, SIGHUP) looks
    at every radio's placements and must not take the simulators' for them
    (a method where a list was expected: every reload was a 500)."""
    from passbridge.sim.wired import SimulatedWiredReaders, reader_sides

    keys, clock = Keys(), ManualClock(MONDAY_10)
    keystore = MemoryKeyStore(clock=clock)
    doc = site_document(public_key_to_pem(keys.backend), public_key_to_pem(keys.bridge))
    services = memory_services(parse_site(doc, file="site.yaml", pin_key=keystore.pin_key()),
                               clock=clock, keystore=keystore)
    services.radios.append(SimulatedWiredReaders(keystore, tmp_path / "sim-osdp",
                                                 reader_sides(services.site)))
    new = copy.deepcopy(doc)
    new["doors"][0]["name"] = "Front entrance"
    outcome = await reload_site(services, yaml.safe_dump(new), source="api", actor="test")
    assert outcome.new_revision == services.site.revision
    assert services.site.doors["front"].name == "Front entrance"
