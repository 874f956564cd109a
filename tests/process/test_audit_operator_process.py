"""Routine operator use beside a running ``passbridge serve`` loses and corrupts nothing.

The CLI (``phone enroll|list|revoke``, ``keys show``) and read-only queries
open the same SQLite file from other processes while the service commits
decisions. If the service's process ever closed a descriptor of its own on
that file, POSIX would drop every fcntl lock it holds there, SQLite's
included; the next process to close its connection would then believe it is
the last one, checkpoint and delete the write-ahead log under the service,
and the service's later commits would go to a file nobody will read again.
This test drives all of that for real and then kills the service with -9.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from passbridge.core.tokens import load_private_key_pem
from passbridge.service.sim_client import backend_token
from tests.process.test_service_process import PASSBRIDGE, audit_decisions, start_server
from tests.service_support import BACKEND

# Rounds of operator work while the service is under load. One round was
# enough to lose records on the code this test was written against; several
# make the failure certain rather than likely.
ROUNDS = 4
CLIENTS = 6

READ_ONLY_QUERY = """
import sqlite3, sys
conn = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
print(conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'decision'").fetchone()[0])
conn.close()
"""


async def _run(*argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    return int(process.returncode or 0), out.decode(errors="replace")


async def _operator(db: Path, tmp: Path) -> list[tuple[str, int, str]]:
    """What an operator does by hand beside a live service, a few times over."""
    shell = shutil.which("sqlite3")
    results: list[tuple[str, int, str]] = []
    for i in range(ROUNDS):
        phone = f"operator-phone-{i}"
        steps: list[tuple[str, tuple[str, ...]]] = [
            ("enroll", (*PASSBRIDGE, "phone", "enroll", "--db", str(db), "--phone", phone,
                        "--user", "alice", "--new-key-out", str(tmp / f"{phone}.pem"))),
            ("list", (*PASSBRIDGE, "phone", "list", "--db", str(db))),
            ("keys show", (*PASSBRIDGE, "keys", "show", "--db", str(db))),
            ("read-only python", (sys.executable, "-c", READ_ONLY_QUERY, str(db))),
            ("audit verify", (*PASSBRIDGE, "audit", "verify", "--db", str(db))),
            ("revoke", (*PASSBRIDGE, "phone", "revoke", "--db", str(db), "--phone", phone)),
        ]
        if shell is not None:
            query = "SELECT COUNT(*) FROM events;"
            steps.append(("sqlite3 -readonly", (shell, "-readonly", str(db), query)))
            steps.append(("sqlite3", (shell, str(db), query)))
        for name, argv in steps:
            code, out = await _run(*argv)
            results.append((name, code, out))
    return results


@pytest.mark.slow
async def test_operator_commands_beside_serve_lose_and_corrupt_nothing(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    key = load_private_key_pem(srv.key_file.read_text(), "ES256")
    answered: list[str] = []

    async def client(session: aiohttp.ClientSession) -> None:
        while True:
            token = backend_token(key, "ES256", backend=BACKEND, site="hq", user="alice",
                                  door="front", now=time.time())
            try:
                async with session.post(f"{srv.url}/v1/doors/front/remote-unlock",
                                        headers={"Authorization": f"Bearer {token}"}) as resp:
                    if resp.status == 200:
                        answered.append((await resp.json())["decision_id"])
            except (TimeoutError, aiohttp.ClientError):
                return

    try:
        async with aiohttp.ClientSession() as session:
            tasks = [asyncio.create_task(client(session)) for _ in range(CLIENTS)]
            results = await _operator(srv.db, tmp_path)
            # Decisions answered after the last operator command count too.
            after_operator = len(answered)
            deadline = time.monotonic() + 60
            while len(answered) < after_operator + 50 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            os.kill(srv.process.pid, signal.SIGKILL)  # clients are still sending
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        if srv.process.poll() is None:
            srv.process.kill()
        srv.process.communicate(timeout=10)
    assert srv.process.returncode == -signal.SIGKILL
    failed = [(name, code, out) for name, code, out in results if code != 0]
    assert failed == []
    assert len(answered) > after_operator >= 1

    with sqlite3.connect(f"file:{srv.db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    recorded = audit_decisions(srv.db)
    missing = [d for d in answered if d not in recorded]
    assert missing == [], f"{len(missing)} of {len(answered)} answered decisions are not on disk"

    # The service starts again on the same database and reads its audit log.
    again = start_server(tmp_path, srv.db)
    try:
        token = backend_token(key, "ES256", backend=BACKEND, site="hq", user="alice",
                              door=None, role="site_admin", now=time.time())
        async with aiohttp.ClientSession() as session, session.get(
            f"{again.url}/v1/events?limit=5", headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 200, await resp.text()
    finally:
        code, out = again.stop()
    assert code == 0, out
    # The hash chain held through all of it, the restart included.
    verified = subprocess.run([*PASSBRIDGE, "audit", "verify", "--db", str(srv.db)],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and verified.stdout.startswith("ok:"), verified.stdout
