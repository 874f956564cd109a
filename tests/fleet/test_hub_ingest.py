"""The hub stores every site's audit once and checks each site's hash chain.

Real nats-server with JetStream, real PostgreSQL, the hub's own consumer;
the sites are contract-following publishers (passbridge.sim.fleet_site).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg
import nats
import pytest

from passbridge.fleet import wire
from passbridge.fleet.hub.ingest import parse_batch
from passbridge.sim.fleet_site import SimulatedSite
from passbridge.sim.local_engines import NatsServer
from tests.fleet.hub_support import new_operator, running_hub, wait_for

pytestmark = pytest.mark.slow


async def _stored(pg_url: str, site: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(pg_url)
    try:
        return list(await connection.fetch(
            "SELECT seq, hash, chain, detail FROM audit_records WHERE site = $1 ORDER BY seq",
            site))
    finally:
        await connection.close()


async def _alerts(pg_url: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(pg_url)
    try:
        return list(await connection.fetch("SELECT * FROM audit_alerts ORDER BY id"))
    finally:
        await connection.close()


async def _count_is(pg_url: str, site: str, n: int) -> bool:
    return len(await _stored(pg_url, site)) == n


async def test_three_sites_audit_is_stored_once_each_and_chains(
        nats_server: NatsServer, pg_url: str) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    sites = [SimulatedSite(name) for name in ("hq", "north.wing", "ünter~1")]
    try:
        async with running_hub(nats_server.url, pg_url) as (hub, _client):
            for site in sites:
                await site.publish_new(js, 25)
            # Sent again: the same Nats-Msg-Id (JetStream drops it) and a new
            # one (as after the duplicate window: the hub's unique key drops it).
            again = sites[0].messages[3]
            await js.publish(again.subject, again.to_bytes(),
                             headers={"Nats-Msg-Id": again.msg_id})
            await js.publish(again.subject, again.to_bytes(),
                             headers={"Nats-Msg-Id": again.msg_id + ":later"})
            for site in sites:
                await wait_for(lambda s=site: _count_is(pg_url, s.site, 25),
                               what=f"25 records of {site.site}")
            await wait_for(lambda: _records_seen(hub, 76), what="the resent record")
        for site in sites:
            rows = await _stored(pg_url, site.site)
            assert [r["seq"] for r in rows] == list(range(1, 26))
            assert {r["chain"] for r in rows} == {"ok"}
            assert [r["hash"] for r in rows] == [m.hash for m in site.messages]
        assert await _alerts(pg_url) == []
    finally:
        await nc.close()


async def _records_seen(hub: Any, n: int) -> bool:
    stored = hub.metrics.records.labels("stored")._value.get()
    duplicate = hub.metrics.records.labels("duplicate")._value.get()
    return bool(stored + duplicate >= n)


async def test_an_edited_record_is_stored_flagged_with_a_mismatch_alert(
        nats_server: NatsServer, pg_url: str) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    site = SimulatedSite("hq")
    records = [site.next_record() for _ in range(3)]
    # Record 2 as someone changed it after it was hashed (its hash kept).
    row = dict(records[1].row)
    row["result"] = "denied"
    records[1] = dataclasses.replace(records[1], row=row)
    try:
        async with running_hub(nats_server.url, pg_url):
            for record in records:
                await site.publish(js, record)
            await wait_for(lambda: _count_is(pg_url, "hq", 3), what="3 records")
            await wait_for(lambda: _has_alert(pg_url, "mismatch"), what="the alert")
        rows = await _stored(pg_url, "hq")
        assert [r["chain"] for r in rows] == ["ok", "mismatch", "ok"]
        [alert] = await _alerts(pg_url)
        assert (alert["site"], alert["kind"], alert["seq"]) == ("hq", "mismatch", 2)
    finally:
        await nc.close()


async def _has_alert(pg_url: str, kind: str, resolved: bool | None = None) -> bool:
    for alert in await _alerts(pg_url):
        if alert["kind"] == kind and (resolved is None
                                      or (alert["resolved_at"] is not None) == resolved):
            return True
    return False


async def test_a_gap_is_pending_then_alerted_then_resolved_when_the_record_comes(
        nats_server: NatsServer, pg_url: str) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    site = SimulatedSite("hq")
    records = [site.next_record() for _ in range(5)]
    try:
        async with running_hub(nats_server.url, pg_url, gap_grace=0.5):
            for record in (records[0], records[1], records[3], records[4]):
                await site.publish(js, record)
            await wait_for(lambda: _count_is(pg_url, "hq", 4), what="4 records")
            await wait_for(lambda: _has_alert(pg_url, "gap", resolved=False),
                           what="the gap alert")
            rows = await _stored(pg_url, "hq")
            assert [(r["seq"], r["chain"]) for r in rows] == [
                (1, "ok"), (2, "ok"), (4, "gap"), (5, "gap")]
            [alert] = await _alerts(pg_url)
            assert (alert["seq"], alert["seq_to"]) == (3, 3)
            await site.publish(js, records[2])
            await wait_for(lambda: _has_alert(pg_url, "gap", resolved=True),
                           what="the gap resolved")
        rows = await _stored(pg_url, "hq")
        assert [(r["seq"], r["chain"]) for r in rows] == [(n, "ok") for n in range(1, 6)]
    finally:
        await nc.close()


async def test_a_record_sent_again_with_another_hash_is_a_conflict_and_the_first_kept(
        nats_server: NatsServer, pg_url: str) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    site = SimulatedSite("hq")
    first = site.next_record()
    forged = SimulatedSite("hq").next_record(user="mallory")
    try:
        async with running_hub(nats_server.url, pg_url):
            await site.publish(js, first)
            await wait_for(lambda: _count_is(pg_url, "hq", 1), what="the record")
            await js.publish(forged.subject, forged.to_bytes(),
                             headers={"Nats-Msg-Id": "another-id"})
            await wait_for(lambda: _has_alert(pg_url, "conflict"), what="the conflict alert")
        [row] = await _stored(pg_url, "hq")
        assert row["hash"] == first.hash
    finally:
        await nc.close()


async def test_messages_that_are_not_records_of_their_subjects_site_are_alerts(
        nats_server: NatsServer, pg_url: str) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    other = SimulatedSite("north").next_record()
    try:
        async with running_hub(nats_server.url, pg_url):
            await js.publish(wire.audit_subject("hq"), b"not json")
            # A record of site "north" published on hq's subject.
            await js.publish(wire.audit_subject("hq"), other.to_bytes())
            await wait_for(lambda: _alert_count(pg_url, 2), what="two alerts")
        alerts = await _alerts(pg_url)
        assert [(a["site"], a["kind"]) for a in alerts] == [("hq", "malformed")] * 2
        assert "north" in alerts[1]["detail"]
        assert await _stored(pg_url, "north") == [] and await _stored(pg_url, "hq") == []
    finally:
        await nc.close()


async def _alert_count(pg_url: str, n: int) -> bool:
    return len(await _alerts(pg_url)) >= n


def test_parse_batch_refuses_a_row_whose_types_would_change_in_postgresql() -> None:
    site = SimulatedSite("hq")
    record = site.next_record()
    row = dict(record.row)
    row["door"] = 7  # an integer where the site's table has text
    bad = dataclasses.replace(record, row=row)
    incoming = parse_batch([(record.subject, bad.to_bytes())])
    assert incoming.records == {}
    assert incoming.malformed == [("hq", "record 1: column door has the wrong type (int)")]


async def test_the_aggregated_audit_pages_and_filters_across_sites(
        nats_server: NatsServer, pg_url: str) -> None:
    operator = new_operator()
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        async with running_hub(nats_server.url, pg_url, operator=operator) as (_hub, client):
            hq, north = SimulatedSite("hq"), SimulatedSite("north")
            await hq.publish_new(js, 5, door="front")
            await north.publish_new(js, 3, door="garage", user="bob")
            await north.publish_new(js, 2, door="garage", user="bob", result="denied")
            await wait_for(lambda: _count_is(pg_url, "north", 5), what="north's records")
            await wait_for(lambda: _count_is(pg_url, "hq", 5), what="hq's records")

            seen: list[tuple[str, int]] = []
            after = 0
            while True:
                answer = await client.get(f"/v1/audit?limit=3&after={after}",
                                          headers=operator.headers())
                assert answer.status == 200
                page = await answer.json()
                seen += [(r["site"], r["seq"]) for r in page["records"]]
                if page["next"] is None:
                    break
                after = page["next"]
            assert sorted(seen) == sorted([("hq", n) for n in range(1, 6)]
                                          + [("north", n) for n in range(1, 6)])

            answer = await client.get("/v1/audit?site=north&result=denied",
                                      headers=operator.headers())
            records = (await answer.json())["records"]
            assert [(r["seq"], r["user"], r["chain"]) for r in records] == [
                (4, "bob", "ok"), (5, "bob", "ok")]
            answer = await client.get("/v1/audit?door=front&limit=0",
                                      headers=operator.headers())
            assert answer.status == 400
            assert (await answer.json())["error"]["code"] == "bad_query"
    finally:
        await nc.close()


async def test_a_restarted_hub_applies_its_new_ack_wait_to_the_existing_consumer(
        nats_server: NatsServer, pg_url: str) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        for ack_wait in (20.0, 3.0):
            async with running_hub(nats_server.url, pg_url, ack_wait=ack_wait):
                info = await js.consumer_info(wire.AUDIT_STREAM, wire.HUB_CONSUMER)
                assert info.config.ack_wait == ack_wait
    finally:
        await nc.close()
