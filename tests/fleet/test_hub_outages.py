"""Outages while sites keep deciding: NATS, PostgreSQL and the hub stop and come
back (kill -9 included), and afterwards the hub holds every record exactly once.

The sites here are contract-following publishers that behave like a site's
link (passbridge.sim.fleet_site: records made while the link is down are
published oldest first once it is back, retried until acknowledged). Counts
are compared exactly; the chain of every site must check out with no alert.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import nats
import pytest

from passbridge.sim.fleet_site import SimulatedSite
from passbridge.sim.local_engines import LocalPostgres, NatsServer, create_database, free_port
from tests.fleet.hub_support import new_operator, running_hub, wait_for

pytestmark = pytest.mark.slow

SITES = ("hq", "north", "south")
RECORDS = 150  # per site, one every 10 ms: about 1.5 s of deciding


@asynccontextmanager
async def deciding_sites(nats_url: str) -> AsyncIterator[list[SimulatedSite]]:
    """Three sites making records and publishing them through any outage; on
    exit, waits until every record was acknowledged by the stream."""
    nc = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream(timeout=2)
    sites = [SimulatedSite(name) for name in SITES]
    done = asyncio.Event()

    async def decide(site: SimulatedSite) -> None:
        for _ in range(RECORDS):
            site.next_record()
            await asyncio.sleep(0.01)

    deciders = [asyncio.create_task(decide(s)) for s in sites]
    links = [asyncio.create_task(s.keep_publishing(js, done)) for s in sites]
    try:
        yield sites
        await asyncio.gather(*deciders)
        done.set()
        async with asyncio.timeout(60):
            await asyncio.gather(*links)
    finally:
        for task in (*deciders, *links):
            task.cancel()
        await nc.close()


async def _assert_exactly_once(pg_url: str, sites: list[SimulatedSite]) -> None:
    async def all_in() -> bool:
        connection = await asyncpg.connect(pg_url)
        try:
            n = await connection.fetchval("SELECT count(*) FROM audit_records")
        finally:
            await connection.close()
        return bool(n == RECORDS * len(sites))

    await wait_for(all_in, timeout=60, what="every record at the hub")
    connection = await asyncpg.connect(pg_url)
    try:
        for site in sites:
            rows = await connection.fetch(
                "SELECT seq, hash, chain FROM audit_records WHERE site = $1 ORDER BY seq",
                site.site)
            assert [r["seq"] for r in rows] == list(range(1, RECORDS + 1)), site.site
            assert [r["hash"] for r in rows] == [m.hash for m in site.messages]
            assert {r["chain"] for r in rows} == {"ok"}, site.site
        assert await connection.fetch("SELECT * FROM audit_alerts") == []
    finally:
        await connection.close()


async def test_nats_stopped_and_restarted_while_sites_decide(
        nats_server: NatsServer, pg_url: str) -> None:
    async with running_hub(nats_server.url, pg_url):
        async with deciding_sites(nats_server.url) as sites:
            await asyncio.sleep(0.4)
            nats_server.stop(kill=True)
            await asyncio.sleep(1.0)  # the sites go on deciding
            nats_server.start()
        await _assert_exactly_once(pg_url, sites)


async def test_postgresql_crashed_and_restarted_while_sites_decide(
        nats_server: NatsServer, own_postgres: LocalPostgres) -> None:
    pg_url = await create_database(own_postgres.url)
    async with running_hub(nats_server.url, pg_url):
        async with deciding_sites(nats_server.url) as sites:
            await asyncio.sleep(0.4)
            await asyncio.to_thread(own_postgres.stop, "immediate")  # a crash, no shutdown
            await asyncio.sleep(1.0)
            await asyncio.to_thread(own_postgres.start)
        await _assert_exactly_once(pg_url, sites)


def _hub_process(nats_url: str, pg_url: str, log: Path) -> subprocess.Popen[bytes]:
    """``passbridge hub`` with its output in ``log`` (never a pipe nobody reads:
    a hub logging through an outage must not block on a full one)."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "passbridge", "hub", "--nats", nats_url, "--pg-url", pg_url,
             "--port", str(free_port()), "--audit-ack-wait", "1", "--gap-grace", "30"],
            stdout=out, stderr=subprocess.STDOUT)
    started = log.stat().st_size
    deadline = time.monotonic() + 60
    while "hub serving on" not in log.read_bytes()[started:].decode(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the hub did not start: " + log.read_text(errors="replace"))
        time.sleep(0.05)
    return process


async def test_hub_killed_and_restarted_while_sites_decide(
        nats_server: NatsServer, pg_url: str, tmp_path: Path) -> None:
    hub = await asyncio.to_thread(_hub_process, nats_server.url, pg_url, tmp_path / "hub.log")
    try:
        async with deciding_sites(nats_server.url) as sites:
            await asyncio.sleep(0.5)
            hub.send_signal(signal.SIGKILL)  # mid-batch, no cleanup
            hub.wait(timeout=10)
            await asyncio.sleep(0.5)
            hub = await asyncio.to_thread(_hub_process, nats_server.url, pg_url,
                                          tmp_path / "hub.log")
        await _assert_exactly_once(pg_url, sites)
    finally:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.communicate()


async def test_two_hubs_sharing_database_and_consumer_store_each_record_once_in_order(
        nats_server: NatsServer, pg_url: str) -> None:
    """Two hubs for availability split the stream's batches between them; each
    site's chain still checks out with no false gap, and nothing is doubled."""
    async with running_hub(nats_server.url, pg_url, gap_grace=2.0) as (first, _a), \
            running_hub(nats_server.url, pg_url, gap_grace=2.0) as (second, _b):
        for hub in (first, second):
            assert hub.ingest is not None
            hub.ingest.batch = 7  # small batches: the two hubs interleave within a site
        async with deciding_sites(nats_server.url) as sites:
            pass
        await _assert_exactly_once(pg_url, sites)
        await asyncio.sleep(2.5)  # past the gap grace: still no alert
        await _assert_exactly_once(pg_url, sites)
        assert first.ingest is not None and second.ingest is not None
        assert first.ingest.stored and second.ingest.stored  # both took part


async def test_the_fleet_view_follows_heartbeats_while_postgresql_is_down(
        nats_server: NatsServer, own_postgres: LocalPostgres) -> None:
    pg_url = await create_database(own_postgres.url)
    operator = new_operator()
    nc = await nats.connect(nats_server.url)
    try:
        async with running_hub(nats_server.url, pg_url, operator=operator) as (hub, client):
            hq = SimulatedSite("hq")
            await asyncio.to_thread(own_postgres.stop, "immediate")
            await hq.heartbeat(nc)

            async def listed_online() -> bool:
                answer = await client.get("/v1/sites", headers=operator.headers())
                view = await answer.json()
                return answer.status == 200 and [(s["site"], s["online"])
                                                 for s in view["sites"]] == [("hq", True)]
            await wait_for(listed_online, 20, "hq online with the database down")
            answer = await client.get("/v1/sites", headers=operator.headers())
            assert "database" in await answer.json()

            await asyncio.to_thread(own_postgres.start)
            assert hub.store is not None

            async def saved() -> bool:
                try:
                    rows = await hub.store.sites() if hub.store else []
                except Exception:  # noqa: BLE001 (still reconnecting)
                    return False
                return [r["site"] for r in rows] == ["hq"]
            await wait_for(saved, 30, "hq's heartbeat stored once the database is back")
    finally:
        await nc.close()
