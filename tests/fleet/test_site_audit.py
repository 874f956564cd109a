"""The site's audit reaches the hub's stream exactly once, and the site never
waits for NATS (issue 12 items 1 and 2), against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from passbridge.adapters.audit_chain import GENESIS, chain_hash
from passbridge.fleet import site_link
from passbridge.service.app import create_app
from passbridge.sim.local_engines import NatsServer
from tests.fleet.support import FleetSite, eventually, exactly_once, fleet_site, stream_messages
from tests.service_support import metric_sample

pytestmark = pytest.mark.slow


async def _all_acked(site: FleetSite) -> bool:
    return site.link.acked_seq == max(await site.db_seqs(), default=0)


async def test_records_reach_the_stream_once_in_order_with_their_chain(
        tmp_path: Path, nats_server: NatsServer) -> None:
    async with fleet_site(tmp_path / "site.sqlite3", nats_server.url) as site:
        await site.decide(30)
        await eventually(lambda: _all_acked(site), 20, "the stream acknowledged every record")
        seqs = await site.db_seqs()
    messages = await stream_messages(nats_server.url)
    exactly_once(messages, seqs)
    # Oldest first, and each record re-hashes onto the one before (the hub's check).
    assert [m.seq for m in messages] == sorted(m.seq for m in messages)
    previous = GENESIS
    for message in messages:
        assert chain_hash(previous, message.row_values()).hex() == message.hash
        previous = bytes.fromhex(message.hash)
    assert {m.row["kind"] for m in messages} >= {"decision", "fleet"}


async def test_nats_down_mid_run_site_decides_and_the_backlog_follows_exactly_once(
        tmp_path: Path, nats_server: NatsServer) -> None:
    async with fleet_site(tmp_path / "site.sqlite3", nats_server.url) as site:
        async with TestClient(TestServer(create_app(site.services))) as client:
            await site.decide(10)
            await eventually(lambda: _all_acked(site), 20, "first records acknowledged")
            nats_server.stop(kill=True)

            async def link_down() -> bool:
                return not site.link.connected
            await eventually(link_down, 20, "the link saw NATS go")
            # Decisions go on at once and are audited while NATS is gone.
            before = len(await site.db_seqs())
            await asyncio.wait_for(site.decide(20), 10)
            assert len(await site.db_seqs()) == before + 20
            health = await (await client.get("/healthz")).json()
            assert health["status"] == "degraded" and "fleet" in health["degraded"]
            scrape = await (await client.get("/metrics")).text()
            assert metric_sample(scrape, "passbridge_fleet_link_up") == 0
            assert (metric_sample(scrape, "passbridge_fleet_audit_backlog") or 0) >= 20

            nats_server.start()
            await eventually(lambda: _all_acked(site), 30, "the backlog acknowledged")
            health = await (await client.get("/healthz")).json()
            assert health["status"] == "ok"
            scrape = await (await client.get("/metrics")).text()
            assert metric_sample(scrape, "passbridge_fleet_link_up") == 1
            assert metric_sample(scrape, "passbridge_fleet_audit_backlog") == 0
            seqs = await site.db_seqs()
    exactly_once(await stream_messages(nats_server.url), seqs)


async def test_link_transitions_are_change_records_in_the_live_log(
        tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(site_link, "LINK_RECORD_INTERVAL_S", 0.0)
    db = tmp_path / "site.sqlite3"
    async with fleet_site(db, nats_server.url) as site, \
            site.services.audit.subscribe() as live:
        async def link_records() -> list[str]:
            page = await site.services.audit.page(0, 1000)
            return [e["payload"]["link"] for e in page if e["kind"] == "fleet"]

        async def is_(states: list[str]) -> bool:
            return await link_records() == states
        await eventually(lambda: is_(["up"]), 10, "an 'up' record at connect")
        nats_server.stop(kill=True)
        await eventually(lambda: is_(["up", "down"]), 20, "one 'down' record")
        nats_server.start()
        await eventually(lambda: is_(["up", "down", "up"]), 20, "one 'up' record again")
        seen = []
        while not live.empty():
            event = live.get_nowait()
            assert event is not None
            if event["kind"] == "fleet":
                seen.append(event["payload"]["link"])
        assert seen == ["up", "down", "up"]


async def test_a_flapping_link_is_recorded_once_per_interval(
        tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(site_link, "LINK_RECORD_INTERVAL_S", 600.0)
    async with fleet_site(tmp_path / "site.sqlite3", nats_server.url) as site:
        async def connected() -> bool:
            return site.link.connected

        async def disconnected() -> bool:
            return not site.link.connected
        await eventually(connected, 10, "connected")
        for _ in range(2):
            nats_server.stop(kill=True)
            await eventually(disconnected, 20, "down")
            nats_server.start()
            await eventually(connected, 20, "up")
        await site.decide(1)  # anything recorded by now is in the page below
        page = await site.services.audit.page(0, 1000)
        states = [e["payload"]["link"] for e in page if e["kind"] == "fleet"]
        scrape = site.services.metrics.render()
    # Four transitions within the interval: the "up" at connect only; the
    # state at the interval's end (up again) would need no record either.
    assert states == ["up"]
    assert metric_sample(scrape, "passbridge_fleet_link_transitions_total", to="down") == 2


async def test_site_restart_resumes_from_the_stored_cursor(
        tmp_path: Path, nats_server: NatsServer) -> None:
    db = tmp_path / "site.sqlite3"
    async with fleet_site(db, nats_server.url) as site:
        keys = site.keys
        await site.decide(15)
        await eventually(lambda: _all_acked(site), 20, "acknowledged before the restart")
        acked = site.link.acked_seq
    # Stored in the site's own database, through the audit log's connection.
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT seq FROM fleet_cursor WHERE name = 'audit'"
                           ).fetchone() == (acked,)
    nats_server.stop()
    async with fleet_site(db, nats_server.url, keys=keys) as site:
        assert site.link.acked_seq == acked  # read back, not re-published from 0
        await site.decide(5)  # offline: these wait in the backlog
        nats_server.start()
        await eventually(lambda: _all_acked(site), 30, "the backlog after the restart")
        seqs = await site.db_seqs()
    exactly_once(await stream_messages(nats_server.url), seqs)


async def test_an_unreachable_nats_at_start_blocks_nothing(tmp_path: Path) -> None:
    from passbridge.sim.local_engines import free_port

    url = f"nats://127.0.0.1:{free_port()}"
    async with fleet_site(tmp_path / "site.sqlite3", url) as site:
        await asyncio.wait_for(site.decide(3), 10)

        async def down_recorded() -> bool:
            page = await site.services.audit.page(0, 100)
            return any(e["kind"] == "fleet" and e["payload"]["link"] == "down" for e in page)
        await eventually(down_recorded, 10, "a 'down' record")
        async with TestClient(TestServer(create_app(site.services))) as client:
            health = await (await client.get("/healthz")).json()
    assert "down since" in health["degraded"]["fleet"]
    assert url.split("//")[1] in json.dumps(health)


async def test_a_nats_without_jetstream_shows_as_paused_publishing(tmp_path: Path) -> None:
    from tests.fleet.nats_fixture import running_nats

    with running_nats(tmp_path, jetstream=False) as server:
        async with fleet_site(tmp_path / "site.sqlite3", server.url) as site:
            await site.decide(3)

            async def paused() -> bool:
                line = site.link.health()
                return site.link.connected and line is not None and "paused" in line
            await eventually(paused, 20, "publishing shown as paused")
            assert site.link.acked_seq == 0
