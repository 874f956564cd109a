"""SIGHUP on a real ``passbridge serve``: the site file is read again and put
in force without a restart; a broken file is logged with its places and the
running site keeps deciding."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.process.test_serve_device_keys import cli, post
from tests.process.test_service_process import Server, device_keys, start_server

pytestmark = pytest.mark.slow


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:  # loopback
        return str(resp.read().decode())


def revision(server: Server) -> str:
    return str(json.loads(fetch(f"{server.url}/healthz"))["revision"])


def wait_for(check: Any, what: str) -> None:
    """Poll ``check`` (a reload runs in the service's own time); the bound is
    generous, it only ends a test that would otherwise hang."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def refused_reloads(server: Server) -> float:
    for line in fetch(f"{server.url}/metrics").splitlines():
        if line.startswith("passbridge_site_reloads_total{") and 'result="refused"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def card(server: Server, door: str, number: str) -> dict[str, Any]:
    key = device_keys(server.db)[(door, "in", "reader")]
    status, body = post(f"{server.url}/v1/doors/{door}/card", key, {"number": number})
    assert status == 200, body
    return body


def test_sighup_applies_a_changed_site_file_and_keeps_the_old_one_when_broken(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path)
    site_file = tmp_path / "site.yaml"
    try:
        first = revision(server)
        granted = card(server, "side", "20002")
        assert (granted["result"], granted["revision"]) == ("granted", first)

        doc = yaml.safe_load(site_file.read_text())
        next(u for u in doc["users"] if u["id"] == "bob")["doors"] = ["annex"]
        doc["doors"].append({"id": "annex", "reader": True})
        site_file.write_text(yaml.safe_dump(doc))
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: revision(server) != first, "the new revision")
        second = revision(server)

        denied = card(server, "side", "20002")
        assert (denied["result"], denied["reason"], denied["revision"]) == (
            "denied", "no_access", second)
        # The door the reload added has its reader key and decides at once.
        opened = card(server, "annex", "20002")
        assert (opened["result"], opened["revision"]) == ("granted", second)

        doc["doors"][0]["unlock_seconds"] = "soon"  # a broken file
        site_file.write_text(yaml.safe_dump(doc))
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: refused_reloads(server) == 1.0, "the refused reload")
        assert revision(server) == second
        still = card(server, "side", "20002")
        assert (still["reason"], still["revision"]) == ("no_access", second)
    finally:
        code, out = server.stop(signal.SIGTERM)
    assert code == 0, out
    assert "site reloaded (sighup by operator (SIGHUP))" in out
    assert "site reload refused (sighup" in out
    assert f"{site_file}: doors[0].unlock_seconds:" in out  # the place, file and key
    assert "Traceback" not in out

    verify = cli("audit", "verify", "--db", str(server.db))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with sqlite3.connect(server.db) as conn:
        rows = conn.execute("SELECT kind, payload FROM events WHERE kind LIKE 'site_reload%' "
                            "ORDER BY seq").fetchall()
    assert [kind for kind, _ in rows] == ["site_reloaded", "site_reload_refused"]
    applied, refused = (json.loads(payload) for _, payload in rows)
    assert (applied["old_revision"], applied["new_revision"]) == (first, second)
    assert applied["changes"]["doors"]["added"] == ["annex"]
    assert refused["problems"][0]["place"] == "doors[0].unlock_seconds"
