"""Fleet mode (issue 12 item 7): the hub's costs against same-run baselines.

One run starts a nats-server with JetStream and an embedded PostgreSQL
(passbridge/sim/local_engines.py), then measures:

1. **Remote unlock through the hub vs directly to the site.** A real
   ``passbridge serve --fleet`` site (examples/site.yaml) and a real
   ``passbridge hub`` process; the same backend-signed unlocks, one at a
   time, alternating direct and through the hub. The bare baseline is one
   NATS request/reply round trip to a responder in another process that
   answers at once (same payload shape). Target: hub p50/p99 minus direct
   p50/p99 <= bare NATS p50/p99 + 2 ms.
2. **Live audit ingestion vs the bare floor.** A publisher process (50
   simulated sites) sends records through JetStream while a consumer in this
   process stores them: once the hub's own ingestion (``Ingest``: parse,
   chain check, COPY + INSERT ON CONFLICT, alerts, ack after commit), once
   the floor (fetch, COPY into a table, ack: nothing checked). Records per
   second from the first publish to the last stored. Target: ratio >= 0.5.
3. **Catch-up after a backlog.** 100,000 records (10 sites) wait in the
   stream with nobody consuming; then the floor and the hub each drain it
   from the start. Records per second and the same ratio.

    .venv/bin/python scripts/bench_fleet.py [--unlocks 300] [--live 20000] [--backlog 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import nats  # noqa: E402

from passbridge.fleet import wire  # noqa: E402
from passbridge.fleet.hub.ingest import Ingest, parse_batch  # noqa: E402
from passbridge.fleet.hub.metrics import HubMetrics  # noqa: E402
from passbridge.fleet.hub.store import HubStore  # noqa: E402
from passbridge.fleet.streams import ensure_audit_stream  # noqa: E402
from passbridge.service import sim_client  # noqa: E402
from passbridge.sim.fleet_site import SimulatedSite  # noqa: E402
from passbridge.sim.local_engines import (  # noqa: E402
    LocalPostgres,
    NatsServer,
    create_database,
    free_port,
    nats_server_binary,
)

SITE = PROJECT / "examples" / "site.yaml"
BACKEND_KEY = PROJECT / "examples" / "keys" / "app-backend.key.pem"
SERVE_READY = re.compile(r"serving site \S+ on (http://[\d.]+:\d+)")
HUB_READY = re.compile(r"hub serving on (http://[\d.]+:\d+)")
BATCH = 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start(cmd: list[str], ready: re.Pattern[str], log: Path) -> tuple[subprocess.Popen[bytes],
                                                                       str]:
    """A process whose output goes to ``log``; its URL once ``ready`` shows."""
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = ready.search(log.read_text(errors="replace"))
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"could not start {' '.join(cmd)}:\n{log.read_text(errors='replace')}")


# --- 1. remote unlock ---------------------------------------------------------------------


async def unlocks(site_url: str, hub_url: str, nats_url: str, n: int) -> None:
    key, alg = sim_client.load_backend_key(BACKEND_KEY)

    def token() -> str:
        return sim_client.backend_token(key, alg, backend="app-backend", site="hq",
                                        user="alice", door="garage", side="in", now=time.time())

    direct: list[float] = []
    hub: list[float] = []
    async with aiohttp.ClientSession() as http:
        async def one(url: str, into: list[float]) -> None:
            headers = {"Authorization": f"Bearer {token()}"}
            started = time.perf_counter()
            async with http.post(url, headers=headers) as answer:
                body = await answer.json()
                if answer.status != 200 or body.get("result") != "granted":
                    raise SystemExit(f"{url}: {answer.status} {body}")
            into.append(time.perf_counter() - started)

        for i in range(n + 20):  # the first 20 of each warm up
            pair = [(f"{site_url}/v1/doors/garage/remote-unlock", direct),
                    (f"{hub_url}/v1/sites/hq/doors/garage/remote-unlock", hub)]
            for url, into in (pair if i % 2 else reversed(pair)):
                await one(url, into if i >= 20 else [])

    # The bare round trip: a responder in another process answering at once.
    responder = subprocess.Popen(
        [sys.executable, "-m", "passbridge.sim.fleet_site", "--nats", nats_url, "--sites", "1",
         "--prefix", "bare", "--records", "0", "--heartbeats", "600", "--answer"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert responder.stdout is not None
        await asyncio.to_thread(responder.stdout.readline)
        nc = await nats.connect(nats_url)
        bare: list[float] = []
        request = wire.RemoteUnlockRequest("garage", f"Bearer {token()}", None).to_bytes()
        for i in range(n + 20):
            started = time.perf_counter()
            await nc.request(wire.remote_unlock_subject("bare-000"), request, timeout=5)
            if i >= 20:
                bare.append(time.perf_counter() - started)
        await nc.close()
    finally:
        responder.terminate()
        responder.wait(10)

    ms = 1e3
    print(f"\n1. remote unlock, {n} each, one at a time (ms)")
    print(f"   {'':24} {'p50':>7} {'p99':>7}")
    for name, values in (("direct to the site", direct), ("through the hub", hub),
                         ("bare NATS request/reply", bare)):
        print(f"   {name:24} {statistics.median(values) * ms:7.2f} {pct(values, 0.99) * ms:7.2f}")
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        added = pct(hub, q) - pct(direct, q)
        allowed = pct(bare, q) + 0.002
        print(f"   {label}: the hub adds {added * ms:.2f} ms; allowed {allowed * ms:.2f} ms "
              f"(bare round trip + 2 ms): ratio {added / allowed:.2f} "
              f"({'met' if added <= allowed else 'NOT met'}, target <= 1)")


# --- 2 and 3. ingestion -------------------------------------------------------------------

FLOOR_TABLE = """
CREATE TABLE IF NOT EXISTS floor_records (
    site text NOT NULL, seq bigint NOT NULL, kind text, at text, decision_id text,
    result text, reason text, door text, side text, "user" text, credential text,
    factor text, state text, state_source text, revision text, unlock_seconds bigint,
    detail text, payload text, hash text, UNIQUE (site, seq))
"""


async def floor_consume(js: Any, pg_url: str, durable: str, total: int) -> float:
    """The floor: fetch a batch, COPY it into a table, ack; seconds until ``total``."""
    connection = await asyncpg.connect(pg_url)
    await connection.execute(FLOOR_TABLE)
    started = time.perf_counter()
    subscription = await js.pull_subscribe(wire.AUDIT_SUBJECTS, durable=durable,
                                           stream=wire.AUDIT_STREAM)
    stored = 0
    while stored < total:
        try:
            messages = await subscription.fetch(BATCH, timeout=1.0)
        except TimeoutError:
            continue
        rows = [(r.site, *r.row_values(), r.hash)
                for records in parse_batch((m.subject, m.data) for m in messages).records.values()
                for r in records]
        await connection.copy_records_to_table("floor_records", records=rows)
        for message in messages:
            await message.ack()
        stored += len(rows)
    elapsed = time.perf_counter() - started
    await connection.close()
    return elapsed


async def hub_consume(js: Any, pg_url: str, durable: str, total: int) -> float:
    """The hub's ingestion (a consumer under its own durable name)."""
    store = await HubStore.open(pg_url)
    ingest = Ingest(store, HubMetrics(), batch=BATCH)
    started = time.perf_counter()
    original = wire.HUB_CONSUMER
    wire.HUB_CONSUMER = durable  # type: ignore[misc]
    try:
        await ingest.start(js)
    finally:
        wire.HUB_CONSUMER = original  # type: ignore[misc]
    while ingest.stored < total:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    await ingest.stop()
    await store.close()
    return elapsed


async def live(nats_url: str, pg_server: str, total: int) -> tuple[float, float]:
    """One round each: the consumer waits, a publisher process sends ``total``."""
    sites = 50
    results = []
    for name, consume in (("floor", floor_consume), ("hub", hub_consume)):
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        await ensure_audit_stream(js)
        await js.purge_stream(wire.AUDIT_STREAM)
        pg_url = await create_database(pg_server)
        task = asyncio.create_task(consume(js, pg_url, f"bench-live-{name}", total))
        await asyncio.sleep(0.5)
        published = time.perf_counter()
        await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "passbridge.sim.fleet_site", "--nats", nats_url,
            "--sites", str(sites), "--prefix", f"live-{name}", "--records",
            str(total // sites), "--heartbeats", "0", "--concurrency", str(sites)],
            check=True, capture_output=True)
        await task
        results.append(total / (time.perf_counter() - published))
        await nc.close()
    floor_rate, hub_rate = results
    print(f"\n2. live ingestion, {total} records from {sites} sites in another process "
          "(records/s, first publish to last stored)")
    print(f"   floor (fetch, COPY, ack)        {floor_rate:9.0f}")
    print(f"   hub (checked, alerts, ack)      {hub_rate:9.0f}")
    print(f"   ratio {hub_rate / floor_rate:.2f} "
          f"({'met' if hub_rate / floor_rate >= 0.5 else 'NOT met'}, target >= 0.5)")
    return floor_rate, hub_rate


async def backlog(nats_url: str, pg_server: str, total: int) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_audit_stream(js)
    await js.purge_stream(wire.AUDIT_STREAM)
    sites = [SimulatedSite(f"backlog-{i}") for i in range(10)]
    started = time.perf_counter()
    for site in sites:
        records = [site.next_record() for _ in range(total // len(sites))]
        for window in range(0, len(records), 500):
            await asyncio.gather(*(site.publish(js, r) for r in records[window:window + 500]))
    publish_rate = total / (time.perf_counter() - started)
    floor_seconds = await floor_consume(js, await create_database(pg_server), "bench-floor",
                                        total)
    hub_seconds = await hub_consume(js, await create_database(pg_server), "bench-hub", total)
    await nc.close()
    floor_rate, hub_rate = total / floor_seconds, total / hub_seconds
    print(f"\n3. catch-up after a {total}-record backlog (10 sites; published at "
          f"{publish_rate:.0f} records/s with nobody consuming)")
    print(f"   floor drains at                 {floor_rate:9.0f} records/s "
          f"({floor_seconds:.1f} s)")
    print(f"   hub drains at                   {hub_rate:9.0f} records/s ({hub_seconds:.1f} s)")
    print(f"   ratio {hub_rate / floor_rate:.2f} "
          f"({'met' if hub_rate / floor_rate >= 0.5 else 'NOT met'}, target >= 0.5)")


async def run(args: argparse.Namespace) -> None:
    binary = nats_server_binary()
    if binary is None:
        raise SystemExit("nats-server not found: run scripts/setup.sh")
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as folder:
        tmp = Path(folder)
        server = NatsServer(binary, tmp / "nats")
        server.start()
        postgres = LocalPostgres(tmp / "pg")
        postgres.start()
        processes: list[subprocess.Popen[bytes]] = []
        try:
            print(f"nats-server {server.url}, PostgreSQL {postgres.url}")
            if args.unlocks:
                site, site_url = start(
                    [sys.executable, "-m", "passbridge", "serve", "--site", str(SITE), "--db",
                     str(tmp / "site.sqlite3"), "--port", str(free_port()), "--fleet",
                     server.url], SERVE_READY, tmp / "site.log")
                processes.append(site)
                hub, hub_url = start(
                    [sys.executable, "-m", "passbridge", "hub", "--nats", server.url,
                     "--pg-url", await create_database(postgres.url), "--port",
                     str(free_port())], HUB_READY, tmp / "hub.log")
                processes.append(hub)
                await asyncio.sleep(1.0)  # the site's link up
                await unlocks(site_url, hub_url, server.url, args.unlocks)
                for process in processes:
                    process.terminate()
                    process.wait(30)
            if args.live:
                await live(server.url, postgres.url, args.live)
            if args.backlog:
                await backlog(server.url, postgres.url, args.backlog)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
            postgres.close()
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unlocks", type=int, default=300)
    parser.add_argument("--live", type=int, default=20_000)
    parser.add_argument("--backlog", type=int, default=100_000)
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
