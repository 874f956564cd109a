"""``passbridge serve`` with wired OSDP readers, as a process: ``--simulate``
puts a simulated OSDP reader with keypad at each reader or keypad door side
(a pty each, the service's own Control Panel), and ``passbridge sim
card|pin`` go through them; a real ``--osdp`` reader without an installed
key is a one-line start-up error."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.process.test_service_process import (
    PASSBRIDGE,
    Server,
    audit_decisions,
    sim,
    start_server,
    write_site,
)
from tests.service_support import metric_sample


def device_events(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE kind = 'device'").fetchall()
    return [json.loads(r[0]) for r in rows]


def test_simulate_runs_card_and_pin_steps_through_osdp(server: Server) -> None:
    db = str(server.db)
    card = sim(server, "card", "--door", "side", "--number", "20002", "--db", db)
    assert card.stdout.startswith("granted access_granted door=side user=bob"), card.stderr
    pin = sim(server, "pin", "--door", "front", "--code", "2468", "--db", db)
    assert pin.stdout.startswith("granted access_granted door=front user=alice"), pin.stderr
    unknown = sim(server, "card", "--door", "front", "--number", "99", "--db", db)
    assert unknown.stdout.startswith("denied unknown_credential"), unknown.stderr
    # Wiegand bits carry a number: one with leading zeros cannot be sent that way.
    zeros = sim(server, "card", "--door", "front", "--number", "0099", "--db", db)
    assert zeros.returncode == 1 and "malformed_body" in zeros.stderr
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as resp:  # noqa: S310
        text = resp.read().decode()
    assert metric_sample(text, "passbridge_osdp_readers_online") == 2
    code, out = server.stop(signal.SIGTERM)
    assert code == 0, out
    assert sorted(audit_decisions(server.db).values()) == [
        "access_granted", "access_granted", "unknown_credential"]
    online = [e for e in device_events(server.db) if e["event"] == "osdp_reader_online"]
    assert sorted(e["door"] for e in online) == ["front", "side"]
    assert all(e["radio"] == "osdp" and e["secure_channel"] for e in online)


def test_a_real_reader_without_an_installed_key_does_not_start(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    run = subprocess.run(
        [*PASSBRIDGE, "serve", "--site", str(site), "--db", str(tmp_path / "pb.sqlite3"),
         "--port", "0", "--osdp", "/dev/ttyUSB9:1=front"],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("error: --osdp /dev/ttyUSB9:1")
    assert "passbridge osdp install" in run.stderr


def test_simulated_readers_are_not_there_without_simulate(tmp_path: Path) -> None:
    plain = start_server(tmp_path)
    try:
        with urllib.request.urlopen(f"{plain.url}/metrics", timeout=10) as resp:  # noqa: S310
            text = resp.read().decode()
        assert metric_sample(text, "passbridge_osdp_readers_online") == 0
        assert not (tmp_path / "data" / "sim-osdp").exists()
    finally:
        plain.stop()
