"""``passbridge hub`` as a process: keys, serving, publish-site, clear start errors."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp
import nats
import pytest
from cryptography.hazmat.primitives import serialization

from passbridge.fleet import wire
from passbridge.fleet.hub.publish import AdminSigner
from passbridge.sim.fleet_site import SimulatedSite, settled
from passbridge.sim.local_engines import NatsServer, free_port
from tests.fleet.hub_support import new_operator
from tests.process.test_service_edge_process import make_certificate

pytestmark = pytest.mark.slow

PASSBRIDGE = [sys.executable, "-m", "passbridge"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PASSBRIDGE, *args], capture_output=True, text=True, timeout=60,
                          env=env, check=False)


def test_keys_create_writes_a_private_file_and_prints_the_public_key(tmp_path: Path) -> None:
    done = _run("hub", "keys", "create", "--out", str(tmp_path), "--id", "adm")
    assert done.returncode == 0, done.stderr
    private = tmp_path / "adm.key.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "adm.pub.pem").read_text() in done.stdout
    assert "PRIVATE" not in done.stdout
    signer = AdminSigner.from_file(private)
    assert signer.kid == "adm"
    again = _run("hub", "keys", "create", "--out", str(tmp_path), "--id", "adm")
    assert again.returncode == 2 and "not overwriting" in again.stderr


def test_the_hub_says_which_part_it_cannot_reach(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    done = _run("hub", "--nats", f"nats://127.0.0.1:{free_port()}",
                "--pg-url", f"postgresql://postgres@127.0.0.1:{port}/postgres")
    assert done.returncode == 1
    assert "PostgreSQL" in done.stderr and "Traceback" not in done.stderr
    env = {k: v for k, v in os.environ.items() if k != "PASSBRIDGE_PG_URL"}
    done = _run("hub", "--nats", "nats://127.0.0.1:1", env=env)
    assert done.returncode == 2 and "--pg-url" in done.stderr


async def test_hub_process_serves_publishes_and_forwards_a_remote_unlock(
        nats_server: NatsServer, pg_url: str, tmp_path: Path) -> None:
    assert _run("hub", "keys", "create", "--out", str(tmp_path), "--id", "adm").returncode == 0
    operator = new_operator()
    operator_pem = tmp_path / "ops.pub.pem"
    operator_pem.write_bytes(operator.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    port = free_port()
    hub = subprocess.Popen(
        [*PASSBRIDGE, "hub", "--nats", nats_server.url, "--pg-url", pg_url, "--port", str(port),
         "--operator-key", f"ops={operator_pem}", "--admin-key", str(tmp_path / "adm.key.pem")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    nc = await nats.connect(nats_server.url)
    try:
        assert hub.stdout is not None
        line = hub.stdout.readline()
        assert "hub serving on" in line, line  # (with --operator-key: no warning first)
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as answer:
            assert answer.status == 200

        site = SimulatedSite("hq")
        await site.answer_remote_unlocks(nc)
        await settled(nc)  # the responder is at the server before the hub asks
        async with aiohttp.ClientSession() as http, http.post(
                f"{base}/v1/sites/hq/doors/front/remote-unlock") as answer:
            # The hub blocks this test's loop nowhere: the site answers from it.
            assert answer.status == 200
            assert (await answer.json())["door"] == "front"

        document = tmp_path / "hq.yaml"
        document.write_text("site:\n  id: hq\n")
        done = _run("hub", "publish-site", str(document), "--site", "hq", "--nats",
                    nats_server.url, "--pg-url", pg_url, "--admin-key",
                    str(tmp_path / "adm.key.pem"))
        assert done.returncode == 0, done.stderr
        assert "seq 1" in done.stdout
        bucket = await nc.jetstream().key_value(wire.kv_bucket("hq"))
        entry = await bucket.get(wire.SITE_KEY)
        keys = {"adm": wire.admin_key_from_pem(
            "adm", (tmp_path / "adm.pub.pem").read_text())}
        statement = wire.verify_statement(entry.value or b"", keys, "hq", applied_seq=0)
        assert isinstance(statement, wire.SiteStatement) and statement.seq == 1
        wrong = _run("hub", "publish-site", str(document), "--site", "north", "--nats",
                     nats_server.url, "--pg-url", pg_url, "--admin-key",
                     str(tmp_path / "adm.key.pem"))
        assert wrong.returncode == 2 and "site.id is 'hq'" in wrong.stderr
    finally:
        await nc.close()
        hub.send_signal(signal.SIGTERM)
        try:
            out, _ = hub.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            hub.kill()
            out, _ = hub.communicate()
    assert hub.returncode == 0, out
    assert "Traceback" not in out



async def test_the_hub_speaks_https_with_its_certificate(
        nats_server: NatsServer, pg_url: str, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    port = free_port()
    hub = subprocess.Popen(
        [*PASSBRIDGE, "hub", "--nats", nats_server.url, "--pg-url", pg_url, "--port", str(port),
         "--tls-cert", str(cert), "--tls-key", str(key)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert hub.stdout is not None
        line = hub.stdout.readline()
        assert f"hub serving on https://127.0.0.1:{port}" in line, line
        trusted = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{port}/healthz", ssl=trusted) as answer:
                assert answer.status == 200
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with http.get(f"https://127.0.0.1:{port}/healthz"):
                    pass
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.communicate(timeout=30)
    half = _run("hub", "--nats", nats_server.url, "--pg-url", pg_url, "--tls-cert", str(cert))
    assert half.returncode == 2 and "--tls-cert and --tls-key go together" in half.stderr
