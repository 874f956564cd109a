"""``passbridge serve`` as a real process: simulation only when asked for
(``--simulate``), device keys made per wired device on first start, listed
and rotated by the CLI, and the quick start's ``passbridge sim`` commands
finding their key in the key store by themselves."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.process.test_service_process import PASSBRIDGE, Server, device_keys, start_server

pytestmark = pytest.mark.slow


def post(url: str, token: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # loopback
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as error:
        return error.code


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PASSBRIDGE, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def stop(server: Server) -> str:
    code, out = server.stop(signal.SIGTERM)
    assert code == 0, out
    return out


def test_plain_serve_has_no_simulation_and_device_keys_work(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        keys = device_keys(server.db)
        # site.yaml of test_service_process: front (reader, keypad), side (reader).
        assert sorted(keys) == [("front", "in", "keypad"), ("front", "in", "reader"),
                                ("side", "in", "reader")]
        front_reader = keys[("front", "in", "reader")]
        for token in (None, front_reader):
            status, body = post(f"{server.url}/v1/sim/doors/front/nfc", token,
                                {"phone": "alice-phone"})
            assert (status, body["error"]["code"]) == (404, "not_found")
        assert get(f"{server.url}/v1/sim", front_reader) == 404
        openapi = json.loads(urllib.request.urlopen(  # loopback
            f"{server.url}/v1/openapi.json", timeout=30).read())
        assert not [p for p in openapi["paths"] if p.startswith("/v1/sim")]
        # The wired routes are production: they work, with the right key only.
        assert post(f"{server.url}/v1/doors/side/card", keys[("side", "in", "reader")],
                    {"number": "20002"})[1]["result"] == "granted"
        assert post(f"{server.url}/v1/doors/side/card", front_reader,
                    {"number": "20002"})[0] == 403
        # Listing never shows a secret unless asked; rotation retires the old key now.
        listing = cli("keys", "device", "list", "--db", str(server.db))
        assert listing.returncode == 0 and "door=front" in listing.stdout
        assert all(k.split(".")[1] not in listing.stdout for k in keys.values())
        rotated = cli("keys", "device", "rotate", "--db", str(server.db), "--door", "front",
                      "--kind", "keypad")
        assert rotated.returncode == 0, rotated.stderr
        assert keys[("front", "in", "keypad")].split(".")[1] not in rotated.stdout
        old = post(f"{server.url}/v1/doors/front/keypad", keys[("front", "in", "keypad")],
                   {"code": "2468"})
        assert (old[0], old[1]["error"]["code"]) == (401, "bad_device_key")
        new_key = device_keys(server.db)[("front", "in", "keypad")]
        assert post(f"{server.url}/v1/doors/front/keypad", new_key,
                    {"code": "2468"})[0] == 200
        missing = cli("keys", "device", "rotate", "--db", str(server.db), "--door", "side",
                      "--kind", "keypad")
        assert missing.returncode == 2 and "no device key" in missing.stderr
    finally:
        out = stop(server)
    # Nothing simulated was enrolled or written; no secret reached the output.
    assert "made 3 device keys" in server.startup and "keys device list" in server.startup
    printed = server.startup + out
    assert all(k.split(".")[1] not in printed for k in [*keys.values(), new_key])
    assert not (server.db.parent / "sim-phones").exists()
    with sqlite3.connect(server.db) as conn:
        assert conn.execute("SELECT count(*) FROM ks_phones").fetchone() == (0,)


def test_simulate_brings_the_sim_routes_behind_the_device_key(tmp_path: Path) -> None:
    # The quick start's layout: the database at passbridge-data/ under the
    # working directory, where `passbridge sim` looks by default.
    db = tmp_path / "passbridge-data" / "passbridge.sqlite3"
    server = start_server(tmp_path, db, extra=("--simulate",))
    try:
        status, body = post(f"{server.url}/v1/sim/doors/front/nfc", None,
                            {"phone": "alice-phone"})
        assert (status, body["error"]["code"]) == (401, "missing_credentials")
        keys = device_keys(db)
        status, body = post(f"{server.url}/v1/sim/doors/front/nfc",
                            keys[("front", "in", "keypad")], {"phone": "alice-phone"})
        assert (status, body["error"]["code"]) == (403, "wrong_device")
        status, body = post(f"{server.url}/v1/sim/doors/front/nfc",
                            keys[("front", "in", "reader")], {"phone": "alice-phone"})
        assert status == 200 and body["result"] == "granted", body
        # The README's commands, with no key given: each finds its door side's key.
        for command in (["card", "--door", "side", "--number", "20002"],
                        ["pin", "--door", "front", "--code", "2468"],
                        ["nfc", "--door", "front", "--phone", "alice-phone"],
                        ["ble", "--door", "side", "--phone", "alice-phone", "--rssi", "-55"],
                        ["nearby", "--door", "front", "--phone", "alice-phone"]):
            done = cli("sim", "--url", server.url, *command, cwd=tmp_path)
            assert done.returncode == 0 and done.stdout.startswith("granted"), (
                command, done.stdout, done.stderr)
    finally:
        stop(server)
