"""Real sites deciding through every outage at once (issue 12 items 1, 2, 6):
two ``passbridge serve --fleet`` processes take remote unlocks the whole time
while NATS is stopped and restarted, the hub process is killed -9 and started
again, and PostgreSQL crashes and comes back. Afterwards the hub holds every
record of each site's SQLite log, hash for hash, once, with no alert."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from passbridge.sim.local_engines import LocalPostgres, NatsServer, create_database
from tests.fleet.hub_support import wait_for
from tests.fleet.support import Site, serve_site
from tests.fleet.test_fleet_e2e import _site_folder, _site_records, _unlock_token
from tests.fleet.test_hub_outages import _hub_process

pytestmark = pytest.mark.slow

SITE_IDS = ("hq", "annex")


async def _keep_unlocking(site: Site, folder: Path, site_id: str, stop: asyncio.Event) -> int:
    """Remote unlocks straight at the site until ``stop``; every one answered."""
    answered = 0
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            headers = {"Authorization": f"Bearer {_unlock_token(folder, site_id)}"}
            async with http.post(f"{site.url}/v1/doors/front/remote-unlock",
                                 headers=headers) as answer:
                assert answer.status == 200, await answer.text()
            answered += 1
            await asyncio.sleep(0.02)
    return answered


async def test_sites_decide_through_nats_hub_and_postgresql_outages(
        nats_server: NatsServer, own_postgres: LocalPostgres, tmp_path: Path) -> None:
    pg_url = await create_database(own_postgres.url)
    folders = {site_id: _site_folder(tmp_path, site_id) for site_id in SITE_IDS}
    sites = {site_id: serve_site(folder, folder / "pb.sqlite3", "--fleet", nats_server.url)
             for site_id, folder in folders.items()}
    hub = await asyncio.to_thread(_hub_process, nats_server.url, pg_url, tmp_path / "hub.log")
    stop = asyncio.Event()
    try:
        deciding = [asyncio.create_task(_keep_unlocking(sites[s], folders[s], s, stop))
                    for s in SITE_IDS]
        await asyncio.sleep(0.5)
        nats_server.stop(kill=True)  # the sites go on deciding
        await asyncio.sleep(1.0)
        nats_server.start()
        await asyncio.sleep(0.5)
        hub.send_signal(signal.SIGKILL)
        await asyncio.to_thread(hub.wait, 10)
        await asyncio.sleep(0.5)
        hub = await asyncio.to_thread(_hub_process, nats_server.url, pg_url,
                                      tmp_path / "hub.log")
        await asyncio.sleep(0.5)
        await asyncio.to_thread(own_postgres.stop, "immediate")
        await asyncio.sleep(1.0)
        await asyncio.to_thread(own_postgres.start)
        await asyncio.sleep(0.5)
        stop.set()
        answered = await asyncio.gather(*deciding)
        assert all(n > 20 for n in answered), answered

        async def all_at_hub() -> bool:
            try:
                connection = await asyncpg.connect(pg_url)
            except (OSError, asyncpg.PostgresError):
                return False
            try:
                for site_id, folder in folders.items():
                    rows = await connection.fetch(
                        "SELECT seq, hash FROM audit_records WHERE site = $1 ORDER BY seq",
                        site_id)
                    if [(r["seq"], r["hash"]) for r in rows] != _site_records(
                            folder / "pb.sqlite3"):
                        return False
                return True
            finally:
                await connection.close()
        await wait_for(all_at_hub, 90, "every site's records at the hub, hash for hash")
        connection = await asyncpg.connect(pg_url)
        try:
            assert {r["chain"] for r in await connection.fetch(
                "SELECT DISTINCT chain FROM audit_records")} == {"ok"}
            assert await connection.fetch("SELECT * FROM audit_alerts") == []
        finally:
            await connection.close()
    finally:
        stop.set()
        for process in (hub, *(site.process for site in sites.values())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (hub, *(site.process for site in sites.values())):
            try:
                await asyncio.to_thread(process.wait, 30)
            except Exception:  # noqa: BLE001
                process.kill()
