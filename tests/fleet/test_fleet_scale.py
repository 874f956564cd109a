"""200 sites against one hub (issue 12 item 6): four processes of 50 simulated
sites each (contract-following publishers, passbridge.sim.fleet_site) publish
their audit and heartbeats and answer remote unlocks; the hub lists all 200
online, stores every record once with every chain intact, and forwards
remote unlocks to sites across the fleet."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from passbridge.sim.local_engines import NatsServer
from tests.fleet.hub_support import new_operator, running_hub, wait_for

pytestmark = pytest.mark.slow

PROCESSES = 4
SITES_PER_PROCESS = 50
RECORDS = 20


async def test_two_hundred_sites_one_hub(nats_server: NatsServer, pg_url: str,
                                         tmp_path: Path) -> None:
    operator = new_operator()
    async with running_hub(nats_server.url, pg_url, operator=operator) as (hub, client):
        processes = [subprocess.Popen(
            [sys.executable, "-m", "passbridge.sim.fleet_site", "--nats", nats_server.url,
             "--sites", str(SITES_PER_PROCESS), "--prefix", f"p{n}", "--records", str(RECORDS),
             "--heartbeats", "30", "--answer"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for n in range(PROCESSES)]
        try:
            for process in processes:
                assert process.stdout is not None
                line = await asyncio.to_thread(process.stdout.readline)
                assert '"ready"' in line, line
            total = PROCESSES * SITES_PER_PROCESS

            async def all_online() -> bool:
                answer = await client.get("/v1/sites", headers=operator.headers())
                return sum(s["online"] for s in (await answer.json())["sites"]) == total
            await wait_for(all_online, 60, f"{total} sites online")

            async def all_stored() -> bool:
                counts = await hub.store.counts() if hub.store else {}
                return len(counts) == total and set(counts.values()) == {RECORDS}
            await wait_for(all_stored, 60, f"{RECORDS} records of each of {total} sites")

            unlocks = [client.post(f"/v1/sites/p{n % PROCESSES}-{n:03d}/doors/front/"
                                   "remote-unlock") for n in range(0, SITES_PER_PROCESS, 5)]
            answers = await asyncio.gather(*unlocks)
            assert [a.status for a in answers] == [200] * len(answers)

            assert hub.store is not None
            chains = await hub.store.pool.fetch(
                "SELECT chain, count(*) AS n FROM audit_records GROUP BY chain")
            assert {r["chain"]: r["n"] for r in chains} == {"ok": total * RECORDS}
            answer = await client.get("/v1/alerts", headers=operator.headers())
            assert (await answer.json())["alerts"] == []
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.communicate(timeout=30)
