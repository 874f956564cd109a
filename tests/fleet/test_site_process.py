"""A real ``passbridge serve --fleet`` process (issue 12 items 1 and 2): its
audit reaches the stream exactly once across kill -9 of the site mid-publish,
a restart, and a NATS outage while it decides; bad fleet flags fail at start."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from passbridge.clock import ManualClock
from passbridge.core.tokens import load_private_key_pem
from passbridge.sim.local_engines import NatsServer
from tests.fleet.support import Site, eventually, exactly_once, serve_site, stream_messages
from tests.process.test_service_process import PASSBRIDGE, write_site
from tests.service_support import backend_token

pytestmark = pytest.mark.slow


def _db_seqs(db: Path) -> list[int]:
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as raw:
        return [int(r[0]) for r in raw.execute("SELECT seq FROM events ORDER BY seq")]


class Backend:
    """An app backend asking for remote unlocks, signed on the wall clock."""

    def __init__(self, tmp: Path) -> None:
        self.key = load_private_key_pem((tmp / "backend.key.pem").read_text(), "ES256")

    def token(self) -> str:
        clock = ManualClock(datetime.fromtimestamp(int(time.time()), UTC))
        return backend_token(self.key, clock, sub="alice", door="front")

    async def unlocks(self, url: str, count: int, *, tolerate_failures: bool = False) -> int:
        """``count`` remote unlocks, four at a time; how many were answered 200."""
        answered = 0
        async with aiohttp.ClientSession() as http:
            async def one() -> None:
                nonlocal answered
                try:
                    async with http.post(f"{url}/v1/doors/front/remote-unlock",
                                         headers={"Authorization": f"Bearer {self.token()}"}
                                         ) as resp:
                        assert resp.status == 200, await resp.text()
                        answered += 1
                except aiohttp.ClientError:
                    if not tolerate_failures:
                        raise
            for start in range(0, count, 4):
                await asyncio.gather(*(one() for _ in range(min(4, count - start))))
        return answered


async def test_kill_9_mid_publish_restart_and_nats_outage_lose_and_double_nothing(
        tmp_path: Path, nats_server: NatsServer, sites: list[Site]) -> None:
    db = tmp_path / "data" / "pb.sqlite3"
    sites.append(serve_site(tmp_path, db, "--fleet", nats_server.url))
    backend = Backend(tmp_path)
    assert await backend.unlocks(sites[-1].url, 40) == 40

    # kill -9 while unlocks are being decided and published.
    before = len(await stream_messages(nats_server.url))

    async def kill_when_publishing() -> None:
        async def some_in_stream() -> bool:
            return len(await stream_messages(nats_server.url)) >= before + 40
        await eventually(some_in_stream, 60, "records reached the stream")
        sites[-1].process.send_signal(signal.SIGKILL)
    await asyncio.gather(backend.unlocks(sites[-1].url, 200, tolerate_failures=True),
                         kill_when_publishing())
    sites[-1].process.wait(20)

    # Restarted on the same database: the backlog goes out, new ones follow.
    sites.append(serve_site(tmp_path, db, "--fleet", nats_server.url))
    assert await backend.unlocks(sites[-1].url, 20) == 20

    async def all_in_stream() -> bool:
        return {m.seq for m in await stream_messages(nats_server.url)} == set(_db_seqs(db))
    await eventually(all_in_stream, 60, "every record of the site in the stream")

    # NATS goes away while the site decides; the site keeps answering.
    nats_server.stop(kill=True)
    assert await backend.unlocks(sites[-1].url, 20) == 20
    async with aiohttp.ClientSession() as http, http.get(f"{sites[-1].url}/healthz") as resp:
        health = await resp.json()
    assert "fleet" in health.get("degraded", {}), health
    nats_server.start()
    await eventually(all_in_stream, 60, "the outage's backlog in the stream")

    sites[-1].process.send_signal(signal.SIGTERM)
    assert sites[-1].process.wait(30) == 0
    exactly_once(await stream_messages(nats_server.url), _db_seqs(db))


@pytest.mark.parametrize(("flags", "says"), [
    (("--fleet-admin-key", "admin.pem"), "--fleet-admin-key needs --fleet URL"),
    (("--fleet", "ftp://hub:4222"), "--fleet"),
    (("--fleet", "nats://127.0.0.1:1", "--fleet-admin-key", "missing.pem"), "missing.pem"),
    (("--fleet", "nats://127.0.0.1:1", "--fleet-admin-key", "site.yaml"),
     "not a readable PEM public key"),
    (("--fleet", "nats://127.0.0.1:1", "--fleet-tls-cert", "site.yaml"),
     "--fleet-tls-cert and --fleet-tls-key go together"),
])
def test_bad_fleet_flags_fail_at_start_naming_the_flag(
        tmp_path: Path, flags: tuple[str, ...], says: str) -> None:
    site = write_site(tmp_path)
    done = subprocess.run(
        [*PASSBRIDGE, "serve", "--site", str(site), "--db", str(tmp_path / "pb.sqlite3"),
         "--port", "0", *flags], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode != 0
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
