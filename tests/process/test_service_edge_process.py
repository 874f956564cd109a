"""``passbridge serve`` as a real process at its edge: thousands of idle and
slow loopback connections on its default limits, and HTTPS with a
self-signed certificate made here."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import resource
import ssl
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import NameOID

from passbridge.core.tokens import load_private_key_pem
from passbridge.service.edge import tls_context
from passbridge.service.http import HttpLimits
from passbridge.service.sim_client import backend_token
from tests.process.test_service_process import PASSBRIDGE, Server, start_server
from tests.service_support import BACKEND, metric_sample

DEFAULTS = HttpLimits()
# Per group: idle (connect, send nothing), dripping a request head, dripping a body.
PER_GROUP = 800
# Generous, for a loaded 2-core machine: how long /healthz or an unlock may take
# while the connections are held, and how long past its timeout a close may come.
ANSWER_WITHIN = 10.0
CLOSE_SLACK = 20.0


def _need_descriptors(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        if hard != resource.RLIM_INFINITY and hard < count:
            pytest.skip(f"needs {count} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))


async def _remote_unlock(srv: Server, session: aiohttp.ClientSession) -> dict[str, object]:
    key = load_private_key_pem(srv.key_file.read_text(), "ES256")
    token = backend_token(key, "ES256", backend=BACKEND, site="hq", user="alice",
                          door="front", now=time.time())
    async with session.post(f"{srv.url}/v1/doors/front/remote-unlock",
                            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
        body: dict[str, object] = await resp.json()
        return body


@pytest.mark.slow
async def test_thousands_of_idle_and_slow_connections_do_not_starve_the_service(
    tmp_path: Path,
) -> None:
    _need_descriptors(3 * PER_GROUP + 500)  # the server inherits the raised limit
    srv = start_server(tmp_path)  # the default limits: nothing tuned for the test
    port = int(srv.url.rsplit(":", 1)[1])
    host, _, _ = srv.url.removeprefix("http://").partition(":")
    assert host == "127.0.0.1"
    host_header = f"Host: {host}\r\n".encode()
    heads = {
        "idle": b"",
        "head": b"GET /healthz HTTP/1.1\r\n" + host_header + b"X-Slow: ",
        "body": (b"POST /v1/factors HTTP/1.1\r\n" + host_header
                 + b"Content-Type: application/jwt\r\nContent-Length: 4000\r\n\r\nab"),
    }
    conns: dict[str, list[tuple[asyncio.StreamWriter, asyncio.Task[tuple[float, bytes]]]]] = {
        kind: [] for kind in heads}
    gate = asyncio.Semaphore(50)  # stay within the listen backlog while connecting
    opened_at: dict[asyncio.StreamWriter, float] = {}

    async def watch(reader: asyncio.StreamReader, opened: float) -> tuple[float, bytes]:
        """How long after opening the server closed it, and what it said first."""
        data = b""
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except ConnectionResetError:
            pass  # what arrived before the reset is kept
        return time.monotonic() - opened, data

    async def open_one(kind: str) -> None:
        async with gate:
            # Stamped before connecting: the server starts its clock on the
            # connection later than this (at accept or first byte), so a close
            # timed from here is never early for a server keeping its limits,
            # however late this loop gets to the connection under load.
            opened = time.monotonic()
            reader, writer = await asyncio.open_connection(host, port)
        opened_at[writer] = opened
        writer.write(heads[kind])
        conns[kind].append((writer, asyncio.create_task(watch(reader, opened))))

    async def drip() -> None:
        while True:  # a byte a second on every slow connection: never done, never idle
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for writer, closed in conns["head"] + conns["body"]:
                # A body dripper goes quiet just before its timeout: a byte
                # landing after the server's 408 and close makes the kernel
                # answer with a reset that can discard the 408 before this
                # side reads it. The body is still incomplete at the timeout,
                # which is what the server must act on.
                if writer in body_writers and now > opened_at[writer] + body_quiet_after:
                    continue
                if not closed.done() and not writer.is_closing():
                    writer.write(b"a")

    try:
        await asyncio.gather(*(open_one(kind) for kind in heads for _ in range(PER_GROUP)))
        body_writers = {writer for writer, _ in conns["body"]}
        body_quiet_after = DEFAULTS.body_timeout - 2.0
        dripper = asyncio.create_task(drip())
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(ANSWER_WITHIN)) as s:
            async with s.get(f"{srv.url}/healthz") as resp:
                assert resp.status == 200
            decision = await _remote_unlock(srv, s)
            assert (decision["result"], decision["reason"]) == ("granted", "access_granted")
            async with s.get(f"{srv.url}/metrics") as resp:
                metrics = await resp.text()
            answered = time.monotonic()
        # The service answered while it held the slow connections: every one
        # still within its limit when the metrics came back was open when
        # they were rendered (all of them unless the machine is very slow, as
        # on a quiet one; one closed sooner than its limit fails the checks below).
        limit = {"idle": DEFAULTS.idle_timeout, "head": DEFAULTS.header_timeout,
                 "body": DEFAULTS.body_timeout}
        within = sum(1 for kind, held in conns.items() for writer, _ in held
                     if opened_at[writer] + limit[kind] > answered)
        open_now = metric_sample(metrics, "passbridge_http_connections_open")
        assert open_now is not None and open_now >= within
        # Then the server closes each one: head drippers and body drippers at
        # their timeouts (the body ones with a JSON 408), idle ones at the idle timeout.
        bound = DEFAULTS.idle_timeout + CLOSE_SLACK
        results = {kind: await asyncio.wait_for(asyncio.gather(*(c for _, c in held)), bound)
                   for kind, held in conns.items()}
        dripper.cancel()
    finally:
        for held in conns.values():
            for writer, _ in held:
                writer.close()
        srv.process.kill()
        srv.process.communicate()
    assert len(results["head"]) == len(results["body"]) == len(results["idle"]) == PER_GROUP
    assert all(data == b"" for _, data in results["head"] + results["idle"])
    assert all(data.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in data
               for _, data in results["body"])
    # Closed by the limits, not before them (load can only make closes later).
    assert min(t for t, _ in results["head"]) >= DEFAULTS.header_timeout - 0.5
    assert min(t for t, _ in results["body"]) >= DEFAULTS.body_timeout - 0.5
    assert min(t for t, _ in results["idle"]) >= DEFAULTS.idle_timeout - 0.5


# --- HTTPS ----------------------------------------------------------------------------


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1 and localhost, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "passbridge test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "server.crt", folder / "server.key"
    cert_file.write_bytes(cert.public_bytes(Encoding.PEM))
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return cert_file, key_file


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PASSBRIDGE, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)


@pytest.mark.slow
async def test_serve_speaks_https_and_sim_verifies_against_the_ca(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    srv = start_server(tmp_path, extra=("--tls-cert", str(cert), "--tls-key", str(key)))
    try:
        assert srv.url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{srv.url}/healthz", ssl=trusted) as resp:
                assert resp.status == 200 and (await resp.json())["site"] == "hq"
                assert resp.headers["Server"] == "passbridge"
            # A client that does not trust the certificate refuses the service.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with session.get(f"{srv.url}/healthz"):
                    pass
            # And plain HTTP is not answered on the TLS port.
            with pytest.raises(aiohttp.ClientError):
                async with session.get(srv.url.replace("https://", "http://") + "/healthz"):
                    pass
        host, port = srv.url.removeprefix("https://").split(":")
        _, writer = await asyncio.open_connection(host, int(port), ssl=trusted)
        assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        writer.close()
        remote = ["remote", "--key", str(srv.key_file), "--backend", BACKEND,
                  "--user", "alice", "--door", "front"]
        ok = run("sim", "--url", srv.url, "--cacert", str(cert), *remote, cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith("granted access_granted door=front user=alice")
        untrusted = run("sim", "--url", srv.url, *remote, cwd=tmp_path)
        assert untrusted.returncode == 1
        assert "certificate verify failed" in untrusted.stderr
        assert "Traceback" not in untrusted.stderr
        (tmp_path / "other").mkdir()
        other_ca, _ = make_certificate(tmp_path / "other")
        wrong_ca = run("sim", "--url", srv.url, "--cacert", str(other_ca), *remote,
                       cwd=tmp_path)
        assert wrong_ca.returncode == 1 and "certificate verify failed" in wrong_ca.stderr
        no_ca = run("sim", "--url", srv.url, "--cacert", str(tmp_path / "nope.pem"), *remote,
                    cwd=tmp_path)
        assert no_ca.returncode == 1 and "nope.pem" in no_ca.stderr
        assert "Traceback" not in wrong_ca.stderr + no_ca.stderr
    finally:
        srv.process.kill()
        srv.process.communicate()


def test_tls_context_refuses_anything_older_than_tls_1_2(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    assert tls_context(cert, key).minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.slow
def test_bad_tls_files_are_one_line_naming_the_file(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key = make_certificate(tmp_path / "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN NOTHING-----\nxx\n")
    missing = tmp_path / "missing.pem"
    from tests.process.test_service_process import write_site

    site = write_site(tmp_path)
    cases = [
        (("--tls-cert", str(missing), "--tls-key", str(key)), [str(missing)]),
        (("--tls-cert", str(cert), "--tls-key", str(missing)), [str(missing)]),
        (("--tls-cert", str(garbage), "--tls-key", str(key)), [str(garbage), "certificate"]),
        (("--tls-cert", str(cert), "--tls-key", str(garbage)), [str(garbage), "private key"]),
        (("--tls-cert", str(cert), "--tls-key", str(other_key)), [str(cert), str(other_key)]),
        (("--tls-cert", str(cert)), ["--tls-key"]),
    ]
    for flags, named in cases:
        result = run("serve", "--site", str(site), "--db", str(tmp_path / "db" / "x.sqlite3"),
                     "--port", "0", *flags, cwd=tmp_path)
        assert result.returncode == 2, (flags, result.stdout, result.stderr)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), flags
        assert all(part in result.stderr for part in named), (flags, result.stderr)
        assert "Traceback" not in result.stderr
    # Nothing was opened or created for a start that could not serve.
    assert not (tmp_path / "db").exists()


def _serve_with_open_files(tmp_path: Path, soft: int, hard: int) -> tuple[int, list[str]]:
    """Start serve with RLIMIT_NOFILE set to (soft, hard); its soft limit once
    it is serving (from /proc) and what it printed until then."""
    from tests.process.test_service_process import READY, write_site

    site = write_site(tmp_path)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    process = subprocess.Popen(
        [*PASSBRIDGE, "serve", "--site", str(site), "--db", str(tmp_path / "d" / "x.sqlite3"),
         "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=tmp_path, preexec_fn=limit)
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if READY.search(line):
                limits = Path(f"/proc/{process.pid}/limits").read_text()
                row = next(r for r in limits.splitlines() if r.startswith("Max open files"))
                return int(row.split()[3]), lines
        raise AssertionError("serve did not start:\n" + "".join(lines))
    finally:
        process.kill()
        process.communicate()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads /proc/<pid>/limits")
def test_serve_fits_its_open_file_limit_to_the_connection_cap(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = DEFAULTS.max_connections + 256
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard open-file limit {hard} is below {wanted}")
    (tmp_path / "a").mkdir()
    raised, _ = _serve_with_open_files(tmp_path / "a", 1024, hard)
    assert raised == wanted
    (tmp_path / "b").mkdir()
    kept, lines = _serve_with_open_files(tmp_path / "b", 300, 300)
    assert kept == 300
    assert any("capping connections at 44" in line for line in lines), lines
