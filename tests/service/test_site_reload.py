"""Live site reload over HTTP (``PUT /v1/site``, ``GET /v1/site``) on a real
aiohttp server, with the real SQLite audit log: validation first, one atomic
swap, decisions that each name exactly one revision, and the audit record."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from passbridge.adapters.keystore import DeviceKind
from passbridge.clock import ManualClock
from passbridge.core.model import Side
from passbridge.core.tokens import public_key_to_pem
from passbridge.errors import ConfigError
from passbridge.service.app import create_app
from passbridge.service.hardware import Placement
from passbridge.service.runtime import Services, build_services
from passbridge.service.site_reload import reload_site
from tests.service_support import (
    MONDAY_10,
    Client,
    Keys,
    admin_token,
    error_of,
    metric_sample,
    site_document,
)


@dataclass
class Live:
    keys: Keys
    clock: ManualClock
    services: Services
    client: Client
    document: dict[str, Any]
    db: Path

    def device(self, door: str, kind: DeviceKind = DeviceKind.READER) -> str:
        slot = (door, Side.IN, kind)
        return next(k.token for k in self.services.keystore.device_keys() if k.slot == slot)

    def admin(self, user: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {admin_token(self.keys, self.clock, user)}"}

    def edited(self, edit: Any) -> dict[str, Any]:
        """A copy of the running document, changed by ``edit(doc)``."""
        doc = copy.deepcopy(self.document)
        edit(doc)
        return doc

    async def put(self, doc: dict[str, Any] | str, user: str = "alice") -> Any:
        body = doc if isinstance(doc, str) else yaml.safe_dump(doc)
        return await self.client.put("/v1/site", data=body.encode(),
                                     headers={**self.admin(user),
                                              "Content-Type": "application/yaml"})

    async def card(self, door: str, number: str) -> dict[str, Any]:
        resp = await self.client.post(f"/v1/doors/{door}/card", json={"number": number},
                                      headers={"Authorization": f"Bearer {self.device(door)}"})
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body

    async def events(self) -> list[dict[str, Any]]:
        return await self.services.audit.page(0, 100_000)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    keys = Keys()
    doc = site_document(public_key_to_pem(keys.backend), public_key_to_pem(keys.bridge))
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(doc))
    clock = ManualClock(MONDAY_10)
    db = tmp_path / "data" / "pb.sqlite3"
    services = build_services(site_file, db, clock=clock)
    services.device_keys.ensure(services.site)
    async with TestClient(TestServer(create_app(services))) as client:
        yield Live(keys, clock, services, client, doc, db)


def bob_loses(door: str) -> Any:
    def edit(doc: dict[str, Any]) -> None:
        bob = next(u for u in doc["users"] if u["id"] == "bob")
        bob["doors"] = [d for d in bob["doors"] if d != door]
    return edit


def add_annex(doc: dict[str, Any]) -> None:
    doc["doors"].append({"id": "annex", "reader": True})


async def test_a_valid_document_is_swapped_in_and_decisions_follow_it(live: Live) -> None:
    before = await live.card("side", "20002")
    assert (before["result"], before["revision"]) == ("granted", live.services.site.revision)
    old = live.services.site.revision

    def edit(doc: dict[str, Any]) -> None:
        bob_loses("side")(doc)
        add_annex(doc)
        doc["doors"] = [d for d in doc["doors"] if d["id"] != "vault"]
    resp = await live.put(live.edited(edit))
    assert resp.status == 200, await resp.text()
    outcome = await resp.json()
    new = live.services.site.revision
    assert (outcome["old_revision"], outcome["new_revision"], outcome["changed"]) == (
        old, new, True)
    assert outcome["changes"]["doors"] == {"added": ["annex"], "removed": ["vault"],
                                           "changed": []}
    assert outcome["changes"]["users"]["changed"] == ["bob"]
    assert outcome["changes"]["users"]["fields"] == {"bob": ["doors"]}
    assert outcome["source"] == "api" and outcome["actor"].endswith(":alice")

    after = await live.card("side", "20002")
    assert (after["result"], after["reason"], after["revision"]) == ("denied", "no_access", new)
    # The new door works at once: its reader got its device key in the swap.
    annex = await live.card("annex", "10001")
    assert (annex["result"], annex["revision"]) == ("granted", new)

    resp = await live.client.get("/v1/site", headers=live.admin())
    shown = await resp.json()
    assert (shown["site"], shown["revision"]) == ("hq", new)
    assert "annex" in shown["doors"] and shown["last_reload"]["seq"] == outcome["seq"]
    assert "2468" not in json.dumps(shown)  # never the document, which holds codes

    record = next(e for e in await live.events() if e["kind"] == "site_reloaded")
    assert record["seq"] == outcome["seq"]
    payload = record["payload"]
    assert (payload["old_revision"], payload["new_revision"], payload["source"]) == (
        old, new, "api")
    assert payload["actor"] == outcome["actor"]
    assert payload["changes"] == outcome["changes"]
    assert payload["dropped"]["overrides"] == []


async def test_an_invalid_document_is_refused_with_places_and_changes_nothing(
    live: Live,
) -> None:
    old = live.services.site.revision

    def edit(doc: dict[str, Any]) -> None:
        doc["doors"][0]["schedule"][0]["state"] = "ajar"
        doc["users"][1]["doors"] = ["front", "nowhere"]
    resp = await live.put(live.edited(edit))
    assert await error_of(resp, 422) == "invalid_site"
    problems = (await resp.json())["error"]["problems"]
    places = {p["place"] for p in problems}
    assert "doors[0].schedule[0].state" in places
    assert any(p.startswith("users[1].doors") for p in places), places
    assert all(p["message"] for p in problems)

    resp = await live.put("site: {id: hq\n  doors: [")  # not YAML at all
    assert await error_of(resp, 422) == "invalid_site"
    assert (await resp.json())["error"]["problems"][0]["place"].startswith("line ")

    assert live.services.site.revision == old
    assert (await live.card("side", "20002"))["revision"] == old
    refused = [e for e in await live.events() if e["kind"] == "site_reload_refused"]
    assert len(refused) == 2 and refused[0]["payload"]["revision"] == old
    assert {p["place"] for p in refused[0]["payload"]["problems"]} == places
    scrape = await (await live.client.get("/metrics")).text()
    assert metric_sample(scrape, "passbridge_site_reloads_total", source="api",
                         result="refused") == 2.0


async def test_the_site_id_cannot_change(live: Live) -> None:
    old = live.services.site.revision
    resp = await live.put(live.edited(lambda doc: doc["site"].update(id="hq2")))
    assert await error_of(resp, 422) == "invalid_site"
    problems = (await resp.json())["error"]["problems"]
    assert [p["place"] for p in problems] == ["site.id"]
    assert "'hq'" in problems[0]["message"] and "'hq2'" in problems[0]["message"]
    assert live.services.site.revision == old


async def test_only_site_admins_may_reload(live: Live) -> None:
    old = live.services.site.revision
    doc = live.edited(add_annex)
    # bob's backend token claims site_admin, but the site file says he is not one.
    assert await error_of(await live.put(doc, user="bob"), 403) == "forbidden"
    resp = await live.client.put("/v1/site", data=yaml.safe_dump(doc))
    assert await error_of(resp, 401) == "missing_credentials"
    assert await error_of(await live.client.get("/v1/site"), 401) == "missing_credentials"
    assert live.services.site.revision == old
    assert not [e for e in await live.events() if e["kind"].startswith("site_reload")]


async def test_a_reload_that_removes_the_callers_role_is_the_last_it_makes(live: Live) -> None:
    """The site file is the authority on who administers: after a reload that
    demotes alice, her next admin call is refused."""
    def demote(doc: dict[str, Any]) -> None:
        next(u for u in doc["users"] if u["id"] == "alice")["role"] = "user"
        next(u for u in doc["users"] if u["id"] == "carol")["role"] = "site_admin"
    assert (await live.put(live.edited(demote))).status == 200
    assert await error_of(await live.put(live.edited(add_annex)), 403) == "forbidden"
    assert (await live.put(live.edited(add_annex), user="carol")).status == 200


async def test_the_same_revision_again_changes_nothing(live: Live) -> None:
    resp = await live.put(live.document)
    assert resp.status == 200
    outcome = await resp.json()
    assert (outcome["changed"], outcome["seq"]) == (False, None)
    assert not [e for e in await live.events() if e["kind"] == "site_reloaded"]


async def test_new_trust_keys_apply_and_key_files_are_read_beside_the_site_file(
    live: Live, tmp_path: Path,
) -> None:
    """A backend key added on reload (from a file relative to the site file)
    is trusted at once; one removed is not trusted any more."""
    new_backend = Keys()
    (tmp_path / "second.pub.pem").write_text(public_key_to_pem(new_backend.backend))

    def swap_backend(doc: dict[str, Any]) -> None:
        doc["trust"]["backends"] = [{"id": "app-backend", "alg": "ES256",
                                     "public_key_file": "second.pub.pem"}]
    resp = await live.put(live.edited(swap_backend))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["changes"]["trust"]["backends"]["changed"] == ["app-backend"]
    old_key = await live.client.get("/v1/site", headers=live.admin())
    assert await error_of(old_key, 401) == "token_invalid"
    new_key = {"Authorization": f"Bearer {admin_token(new_backend, live.clock)}"}
    assert (await live.client.get("/v1/site", headers=new_key)).status == 200


async def test_a_too_large_document_is_refused_before_it_is_read(live: Live) -> None:
    resp = await live.put("#" * (4 * 1024 * 1024 + 1))
    assert await error_of(resp, 413) == "request_too_large"


async def test_a_reload_the_audit_log_refuses_is_rolled_back(live: Live) -> None:
    """No configuration is in force without its audit record."""
    old = live.services.site
    store = live.services.audit.store

    async def refuse(kind: str, payload: Any) -> int:
        raise RuntimeError("disk full")
    original = store.record_change
    store.record_change = refuse  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError):
            await reload_site(live.services, yaml.safe_dump(live.edited(add_annex)),
                              source="api", actor="test")
    finally:
        store.record_change = original  # type: ignore[method-assign]
    assert live.services.site is old
    assert (await live.card("side", "20002"))["revision"] == old.revision


async def test_decisions_racing_reloads_each_follow_exactly_one_revision(
    live: Live, tmp_path: Path,
) -> None:
    """Cards at "side" race PUTs that flip bob's access there: each decision
    names revision A (granted) or B (no_access) and follows that revision's
    rules; in the audit log every decision names the revision of the last
    reload record before it; the hash chain verifies afterwards."""
    rev_a = live.services.site.revision
    doc_a, doc_b = live.document, live.edited(bob_loses("side"))
    outcomes: list[dict[str, Any]] = []

    async def reload(doc: dict[str, Any]) -> None:
        resp = await live.put(doc)
        assert resp.status == 200, await resp.text()
        outcomes.append(await resp.json())

    async def cards(n: int) -> list[dict[str, Any]]:
        return [await live.card("side", "20002") for _ in range(n)]

    jobs: list[Any] = []
    for i in range(6):
        jobs.append(cards(8))
        jobs.append(reload(doc_b if i % 2 == 0 else doc_a))
    results = await asyncio.gather(*jobs)
    decisions = [d for r in results if isinstance(r, list) for d in r]
    rev_b = next(o["new_revision"] for o in outcomes if o["old_revision"] == rev_a)
    assert len(outcomes) == 6 and len(decisions) == 48
    rules = {rev_a: ("granted", "access_granted"), rev_b: ("denied", "no_access")}
    for decision in decisions:
        assert decision["revision"] in rules
        assert (decision["result"], decision["reason"]) == rules[decision["revision"]]

    current = rev_a
    seen = {"decision": 0, "site_reloaded": 0}
    for event in await live.events():
        if event["kind"] == "site_reloaded":
            assert event["payload"]["old_revision"] == current
            current = event["payload"]["new_revision"]
        elif event["kind"] == "decision":
            assert event["revision"] == current
        seen[event["kind"]] = seen.get(event["kind"], 0) + 1
    assert (seen["decision"], seen["site_reloaded"]) == (48, 6)

    await live.services.audit.store.close()
    verify = subprocess.run([sys.executable, "-m", "passbridge", "audit", "verify", "--db",
                             str(live.db)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ok:" in verify.stdout


async def test_reload_site_raises_the_placed_error_for_callers(live: Live) -> None:
    """The entry point other code (the fleet) calls: ConfigError with places."""
    with pytest.raises(ConfigError) as refused:
        await reload_site(live.services, "site: {id: hq}\n", source="fleet", actor="hub",
                          origin="fleet revision 7")
    assert all(p.file == "fleet revision 7" for p in refused.value.problems)
    assert {p.path for p in refused.value.problems} >= {"site.timezone"}


@dataclass
class _PlacedReader:
    """A stand-in for a real reader placed at a door side (``serve --nfc``):
    hardware, the one thing these tests do not have."""

    placement: Placement

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


async def test_a_door_a_real_radio_is_placed_at_cannot_go(live: Live) -> None:
    live.services.radios.append(_PlacedReader(Placement("usb:054c:06c3", "vault", Side.IN)))
    live.services.radios.append(_PlacedReader(Placement("hci1", "side", Side.OUT)))
    # The exit reader at "side" was placed before the door had an exit side:
    # that does not block a reload, and this one gives the door its exit.
    with_exit = live.edited(lambda doc: doc["doors"][1].update(in_out=True))
    assert (await live.put(with_exit)).status == 200
    old = live.services.site.revision

    def edit(doc: dict[str, Any]) -> None:
        doc["doors"] = [d for d in doc["doors"] if d["id"] != "vault"]
        doc["doors"][1]["in_out"] = False
    resp = await live.put(live.edited(edit))
    assert await error_of(resp, 422) == "invalid_site"
    problems = (await resp.json())["error"]["problems"]
    places = [p["place"] for p in problems]
    assert places == ["doors", "doors[1].in_out"], problems
    assert "usb:054c:06c3" in problems[0]["message"]
    assert live.services.site.revision == old
