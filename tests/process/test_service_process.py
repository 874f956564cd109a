"""``passbridge serve`` as a real process on loopback: driven by ``passbridge
sim``, stopped by signal, killed with -9 under load, fuzzed by schemathesis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

from passbridge.core.tokens import private_key_to_pem, public_key_to_pem
from passbridge.service.sim_client import backend_token
from tests.service_support import BACKEND, _p256

PASSBRIDGE = [sys.executable, "-m", "passbridge"]
READY = re.compile(r"serving site \S+ on https?://([\d.]+):(\d+)")


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    db: Path
    key_file: Path
    startup: str = ""  # what serve printed up to its ready line

    def drain(self) -> list[str]:
        """From now on read what the server prints, in a thread, into the
        list returned: a test that makes it log a lot (a fuzzer's thousands of
        refused requests) must not fill the pipe, which would stall the server
        on its next log line. Don't call ``stop`` after this."""
        assert self.process.stdout is not None
        out, lines = self.process.stdout, []

        def read() -> None:
            with contextlib.suppress(ValueError, OSError):  # closed by teardown
                lines.extend(out)

        threading.Thread(target=read, daemon=True).start()
        return lines

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.process.send_signal(sig)
        out, _ = self.process.communicate(timeout=20)
        return self.process.returncode, out


def write_site(tmp: Path) -> Path:
    key = _p256()
    key_file = tmp / "backend.key.pem"
    key_file.write_text(private_key_to_pem(key))
    (tmp / "backend.pub.pem").write_text(public_key_to_pem(key))
    site = {
        "site": {"id": "hq", "timezone": "UTC"},
        "doors": [
            {"id": "front", "reader": True, "keypad": True},
            {"id": "side", "reader": True, "keypad": False},
        ],
        "trust": {"backends": [{"id": BACKEND, "alg": "ES256",
                                "public_key_file": "backend.pub.pem"}]},
        "users": [
            {"id": "alice", "role": "site_admin", "cards": ["10001"], "pin": "2468",
             "phones": ["alice-phone"], "doors": "all", "remote_unlock": True},
            {"id": "bob", "cards": ["20002"], "pin": "1357", "doors": ["side"]},
        ],
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def start_server(tmp: Path, db: Path | None = None, extra: tuple[str, ...] = ()) -> Server:
    """``passbridge serve`` on a free loopback port; ``extra``: more serve flags."""
    site = tmp / "site.yaml" if (tmp / "site.yaml").exists() else write_site(tmp)
    db = db or tmp / "data" / "pb.sqlite3"
    process = subprocess.Popen(
        [*PASSBRIDGE, "serve", "--site", str(site), "--db", str(db), "--port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp,
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = READY.search(line)
        if found:
            scheme = "https" if " on https://" in line else "http"
            url = f"{scheme}://{found.group(1)}:{found.group(2)}"
            return Server(process, url, db, tmp / "backend.key.pem", "".join(lines))
    process.kill()
    raise AssertionError("server did not start:\n" + "".join(lines))


def sim(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PASSBRIDGE, "sim", "--url", server.url, *args],
        capture_output=True, text=True, timeout=30,
    )


def device_keys(db: Path) -> dict[tuple[str, str, str], str]:
    """The device keys as the operator sees them: ``keys device list --show-secret``."""
    listing = subprocess.run([*PASSBRIDGE, "keys", "device", "list", "--db", str(db),
                              "--show-secret"], capture_output=True, text=True, timeout=30)
    assert listing.returncode == 0, listing.stderr
    found = {}
    for line in listing.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split()[1:])
        found[(fields["door"], fields["side"], fields["kind"])] = fields["key"]
    return found


def audit_decisions(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT decision_id, reason FROM events WHERE kind = 'decision'").fetchall()
    return {str(d): str(r) for d, r in rows}


def test_serve_driven_by_sim_then_stopped_by_sigterm(server: Server) -> None:
    db = str(server.db)
    card = sim(server, "card", "--door", "side", "--number", "20002", "--db", db)
    assert card.returncode == 0, card.stderr
    assert card.stdout.startswith("granted access_granted door=side user=bob")
    remote = sim(server, "--json", "remote", "--key", str(server.key_file), "--backend", BACKEND,
                 "--user", "alice", "--door", "front")
    assert remote.returncode == 0, remote.stderr
    decision = json.loads(remote.stdout)
    assert (decision["result"], decision["reason"]) == ("granted", "access_granted")
    wrong_key = sim(server, "pin", "--door", "front", "--code", "2468",
                    "--device-key", "not-the-right-device-key")
    assert wrong_key.returncode == 1 and "bad_device_key" in wrong_key.stderr
    pin = sim(server, "pin", "--door", "front", "--code", "2468", "--db", db)
    assert pin.stdout.startswith("granted access_granted door=front user=alice"), pin.stderr
    # The simulated radios: nfcpy over udp, bleak over bumble, the nearby JWS.
    tap = sim(server, "nfc", "--phone", "alice-phone", "--door", "front", "--db", db)
    assert tap.stdout.startswith("granted access_granted door=front user=alice"), tap.stderr
    assert " phone=0101 " in tap.stdout  # what the phone was told: door unsecured
    near = sim(server, "ble", "--phone", "alice-phone", "--door", "side", "--rssi", "-55",
               "--db", db)
    assert near.stdout.startswith("granted access_granted door=side user=alice"), near.stderr
    far = sim(server, "ble", "--phone", "alice-phone", "--door", "side", "--rssi", "-90",
              "--db", db)
    assert far.stdout.startswith("denied too_far door=side user=alice"), far.stderr
    nearby = sim(server, "nearby", "--phone", "alice-phone", "--door", "front", "--db", db)
    assert nearby.stdout.startswith("granted access_granted door=front"), nearby.stderr
    unseen = sim(server, "nearby", "--phone", "alice-phone", "--door", "front", "--rssi", "none",
                 "--db", db)
    assert unseen.stdout.startswith("denied not_nearby"), unseen.stderr
    nobody = sim(server, "nfc", "--phone", "mallory-phone", "--door", "front", "--db", db)
    assert nobody.returncode == 1 and "no_such_phone" in nobody.stderr
    code, out = server.stop(signal.SIGTERM)
    assert code == 0 and "stopped" in out, out
    reasons = sorted(audit_decisions(server.db).values())
    assert reasons == ["access_granted"] * 6 + ["not_nearby", "too_far"]
    assert (server.db.parent / "sim-phones" / "alice-phone.pem").stat().st_mode & 0o077 == 0
    assert decision["decision_id"] in audit_decisions(server.db)


def test_bad_site_file_and_busy_port_fail_cleanly(tmp_path: Path, server: Server) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: hq}\ndoors: [{id: front, keypad: maybe}]\n")
    result = subprocess.run([*PASSBRIDGE, "serve", "--site", str(bad), "--db",
                             str(tmp_path / "other" / "x.sqlite3")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "bad.yaml: site.timezone" in result.stderr and "Traceback" not in result.stderr
    port = server.url.rsplit(":", 1)[1]
    busy = subprocess.run([*PASSBRIDGE, "serve", "--site", str(tmp_path / "site.yaml"), "--db",
                           str(tmp_path / "other" / "y.sqlite3"), "--port", port],
                          capture_output=True, text=True, timeout=30)
    assert busy.returncode == 1
    assert "\nerror: cannot listen on" in "\n" + busy.stderr and "Traceback" not in busy.stderr
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database" * 100)
    unreadable = subprocess.run([*PASSBRIDGE, "serve", "--site", str(tmp_path / "site.yaml"),
                                 "--db", str(garbage), "--port", "0"],
                                capture_output=True, text=True, timeout=30)
    assert unreadable.returncode == 1
    assert unreadable.stderr.count("\n") == 1 and "garbage.sqlite3" in unreadable.stderr


async def test_kill_9_under_load_loses_no_answered_decision(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    from passbridge.core.tokens import load_private_key_pem

    key = load_private_key_pem(srv.key_file.read_text(), "ES256")
    answered: list[str] = []
    enough = asyncio.Event()

    async def client(session: aiohttp.ClientSession) -> None:
        while True:
            door = "front"
            token = backend_token(key, "ES256", backend=BACKEND, site="hq", user="alice",
                                  door=door, now=time.time())
            try:
                async with session.post(f"{srv.url}/v1/doors/{door}/remote-unlock",
                                        headers={"Authorization": f"Bearer {token}"}) as resp:
                    if resp.status == 200:
                        body = await resp.json()
                        answered.append(body["decision_id"])
                        if len(answered) >= 300:
                            enough.set()
            except (TimeoutError, aiohttp.ClientError):
                return

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(client(session)) for _ in range(10)]
        await asyncio.wait_for(enough.wait(), 60)
        os.kill(srv.process.pid, signal.SIGKILL)  # mid-flight: clients are still sending
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    srv.process.communicate(timeout=10)
    assert srv.process.returncode == -signal.SIGKILL
    recorded = audit_decisions(srv.db)
    missing = [d for d in answered if d not in recorded]
    assert len(answered) >= 300 and missing == []
    # And the service starts again on the same database.
    again = start_server(tmp_path, srv.db)
    code, _ = again.stop()
    assert code == 0


def test_schemathesis_finds_no_server_error(server: Server, tmp_path: Path) -> None:
    # A device key (the front door's reader) lets card bodies and the
    # simulation routes reach the controller; other devices' routes answer
    # 403. Backend tokens are single-use, so admin and remote calls are
    # fuzzed unauthenticated.
    device_key = device_keys(server.db)[("front", "in", "reader")]
    server.drain()
    result = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run",
         f"{server.url}/v1/openapi.json", "--checks", "not_a_server_error",
         "-H", f"Authorization: Bearer {device_key}",
         "--max-examples", "15", "--phases", "coverage,fuzzing", "--seed", "1",
         "--workers", "2", "--no-color", "--suppress-health-check", "all",
         "--report-dir", str(tmp_path / "reports")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # Every operation schemathesis found in the document was fuzzed, and passed.
    counted = re.search(r"Operations:\s+(\d+) selected / (\d+) total", result.stdout)
    assert counted is not None and counted.group(1) == counted.group(2), result.stdout
    operations = int(counted.group(1))
    assert re.search(rf"Fuzzing .*\n\n\s+✅ {operations} passed", result.stdout), result.stdout
