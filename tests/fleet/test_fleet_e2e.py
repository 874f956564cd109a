"""Three real ``passbridge serve --fleet`` sites and a hub (issue 12 item 6):
remote unlocks through the hub, a revocation published at the hub reaching
its site, every site's audit aggregated at the hub exactly once, and a hub
that can neither forge nor replay a backend's unlock."""

from __future__ import annotations

import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import nats
import pytest
import yaml

from passbridge.clock import ManualClock
from passbridge.core.tokens import load_private_key_pem, public_key_to_pem
from passbridge.fleet import wire
from passbridge.sim.fleet_site import settled
from passbridge.sim.local_engines import NatsServer
from tests.fleet.hub_support import new_operator, new_signer, running_hub, wait_for
from tests.fleet.support import Site, serve_site
from tests.process.test_service_process import write_site
from tests.service_support import backend_token

pytestmark = pytest.mark.slow

SITE_IDS = ("hq", "north.wing", "süd~2")


def _site_folder(tmp: Path, site_id: str) -> Path:
    """A site file like the process tests' one, under its own id and folder."""
    folder = tmp / wire.site_token(site_id)
    folder.mkdir()
    path = write_site(folder)
    document = yaml.safe_load(path.read_text())
    document["site"]["id"] = site_id
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return folder


def _unlock_token(folder: Path, site_id: str, door: str = "front") -> str:
    key = load_private_key_pem((folder / "backend.key.pem").read_text(), "ES256")
    clock = ManualClock(datetime.fromtimestamp(int(time.time()), UTC))
    return backend_token(key, clock, sub="alice", door=door, aud=site_id)


def _site_records(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as raw:
        return [(int(r[0]), str(r[1])) for r in raw.execute(
            "SELECT seq, hash FROM events ORDER BY seq")]


async def test_three_sites_and_a_hub(nats_server: NatsServer, pg_url: str, tmp_path: Path,
                                     sites: list[Site]) -> None:
    operator, signer = new_operator(), new_signer("adm")
    admin_pem = tmp_path / "adm.pub.pem"
    admin_pem.write_text(public_key_to_pem(signer.key))
    folders = {site_id: _site_folder(tmp_path, site_id) for site_id in SITE_IDS}
    for folder in folders.values():
        sites.append(serve_site(folder, folder / "pb.sqlite3", "--fleet", nats_server.url,
                                "--fleet-admin-key", f"adm={admin_pem}"))
    nc = await nats.connect(nats_server.url)
    try:
        async with running_hub(nats_server.url, pg_url, operator=operator,
                               signer=signer) as (hub, client):
            async def all_online() -> bool:
                answer = await client.get("/v1/sites", headers=operator.headers())
                listed = (await answer.json())["sites"]
                return sorted(s["site"] for s in listed if s["online"]) == sorted(SITE_IDS)
            await wait_for(all_online, 30, "all three sites online at the hub")

            # Remote unlocks through the hub open each site's door.
            for site_id, folder in folders.items():
                path = f"/v1/sites/{site_id}/doors/front/remote-unlock"
                answer = await client.post(path, headers={
                    "Authorization": f"Bearer {_unlock_token(folder, site_id)}"})
                assert answer.status == 200, await answer.text()
                decision = await answer.json()
                assert decision["result"] == "granted" and decision["door"] == "front"

            # The hub cannot replay what it forwarded, nor sign an unlock itself.
            captured: list[bytes] = []

            async def keep(msg: Any) -> None:
                captured.append(msg.data)
            spy = await nc.subscribe(wire.remote_unlock_subject("hq"), cb=keep)
            await settled(nc)  # the spy is at the server before the unlock is sent
            folder = folders["hq"]
            answer = await client.post("/v1/sites/hq/doors/front/remote-unlock", headers={
                "Authorization": f"Bearer {_unlock_token(folder, 'hq')}"})
            assert answer.status == 200
            await wait_for(lambda: _some(captured), 10, "the forwarded request seen on NATS")
            await spy.unsubscribe()
            replay = await nc.request(wire.remote_unlock_subject("hq"), captured[0], timeout=5)
            replayed = wire.RemoteUnlockReply.from_bytes(replay.data)
            assert replayed.status != 200 and replayed.body.get("result") != "granted"
            assert "replayed" in str(replayed.body)
            forged = _forged_by_hub(signer.key, "hq")
            answer = await client.post("/v1/sites/hq/doors/front/remote-unlock",
                                       headers={"Authorization": f"Bearer {forged}"})
            assert answer.status == 401, await answer.text()

            # A revocation published at the hub reaches hq (its audit says so).
            answer = await client.delete("/v1/sites/hq/phones/alice-phone?user=alice",
                                         headers=operator.headers())
            assert answer.status == 200

            async def revoked_at_hq() -> bool:
                answer = await client.get("/v1/audit?site=hq&kind=fleet_applied",
                                          headers=operator.headers())
                return any('"revoke"' in (r["payload"] or "")
                           for r in (await answer.json())["records"])
            await wait_for(revoked_at_hq, 30, "hq's record of the applied revocation")

            # Every record of every site is at the hub, once, hash for hash.
            async def all_aggregated() -> bool:
                counts = await hub.store.counts() if hub.store else {}
                return all(counts.get(site_id) == len(_site_records(folder / "pb.sqlite3"))
                           for site_id, folder in folders.items())
            await wait_for(all_aggregated, 30, "every site's audit at the hub")
            for site_id, folder in folders.items():
                answer = await client.get(f"/v1/audit?site={site_id}&limit=1000",
                                          headers=operator.headers())
                records = (await answer.json())["records"]
                assert [(r["seq"], r["hash"]) for r in records] == _site_records(
                    folder / "pb.sqlite3")
                assert {r["chain"] for r in records} == {"ok"}
            answer = await client.get("/v1/alerts", headers=operator.headers())
            assert (await answer.json())["alerts"] == []
    finally:
        await nc.close()


async def _some(captured: list[bytes]) -> bool:
    return bool(captured)


def _forged_by_hub(hub_key: Any, site_id: str) -> str:
    """What a hub could sign: a backend-shaped unlock with the only key it holds."""
    now = int(time.time())
    return jwt.encode({"iss": "app-backend", "aud": site_id, "sub": "alice", "door": "front",
                       "iat": now, "exp": now + 30, "jti": uuid.uuid4().hex},
                      hub_key, algorithm="ES256", headers={"kid": "app-backend"})
