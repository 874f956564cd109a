"""Console sign-in against a real ``passbridge serve``: the link it prints at
start-up, links from ``passbridge console-link`` (another process on the same
database), the Secure cookie under TLS, and a session of another service."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.process.test_service_edge_process import make_certificate
from tests.process.test_service_process import PASSBRIDGE, Server, start_server
from tests.service_support import link_token

pytestmark = pytest.mark.slow


def console_link(srv: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PASSBRIDGE, "console-link", "--db", str(srv.db), "--url", srv.url,
                           *args], capture_output=True, text=True, timeout=60)


def printed_link(srv: Server) -> str:
    """The link ``serve --console-link`` prints right after its ready line."""
    assert srv.process.stdout is not None
    line = srv.process.stdout.readline()
    assert line.startswith("passbridge: console sign-in link for alice"), line
    return line.rsplit(" ", 1)[1].strip()


def stopped(srv: Server) -> None:
    if srv.process.poll() is None:
        srv.process.kill()
        srv.process.communicate()


async def test_serve_prints_a_link_and_the_cli_mints_more(tmp_path: Path) -> None:
    srv = start_server(tmp_path, extra=("--console-link", "alice"))
    try:
        url = printed_link(srv)
        assert url.startswith(f"{srv.url}/console/sign-in#token=")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            first = await browser.post(f"{srv.url}/v1/session", json={"token": link_token(url)})
            assert first.status == 200, await first.text()
            assert (await first.json())["user"] == "alice"
            assert (await browser.get(f"{srv.url}/v1/doors")).status == 200
            replay = await browser.post(f"{srv.url}/v1/session",
                                        json={"token": link_token(url)})
            assert replay.status == 401
            assert (await replay.json())["error"]["code"] == "link_used"

        made = console_link(srv, "--user", "alice", "--site", str(tmp_path / "site.yaml"))
        assert made.returncode == 0, made.stderr
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            signed = await browser.post(f"{srv.url}/v1/session",
                                        json={"token": link_token(made.stdout.strip())})
            assert signed.status == 200, await signed.text()
            # A session from this process means nothing to another service.
            cookie = signed.cookies["passbridge_session"].value
        (tmp_path / "other").mkdir()
        other = start_server(tmp_path / "other")
        try:
            async with aiohttp.ClientSession() as stranger:
                resp = await stranger.get(f"{other.url}/v1/doors",
                                          cookies={"passbridge_session": cookie})
                assert resp.status == 401
                assert (await resp.json())["error"]["code"] == "session_expired"
        finally:
            stopped(other)

        refused = console_link(srv, "--user", "bob", "--site", str(tmp_path / "site.yaml"))
        assert refused.returncode == 2
        assert "'bob' is not an enabled site admin" in refused.stderr
        assert refused.stdout == "" and "Traceback" not in refused.stderr
    finally:
        stopped(srv)


def test_serve_refuses_a_console_link_for_a_non_admin(tmp_path: Path) -> None:
    from tests.process.test_service_process import write_site

    site = write_site(tmp_path)
    result = subprocess.run([*PASSBRIDGE, "serve", "--site", str(site), "--db",
                             str(tmp_path / "pb.sqlite3"), "--port", "0",
                             "--console-link", "bob"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--console-link: 'bob' is not an enabled site admin" in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_cookie_is_secure_under_tls(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    srv = start_server(tmp_path, extra=("--tls-cert", str(cert), "--tls-key", str(key),
                                        "--console-link", "alice"))
    try:
        url = printed_link(srv)
        assert url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as browser:
            resp = await browser.post(f"{srv.url}/v1/session", json={"token": link_token(url)},
                                      ssl=trusted)
            assert resp.status == 200
            attributes = {a.strip().lower() for a in resp.headers["Set-Cookie"].split(";")[1:]}
            assert {"secure", "httponly", "samesite=strict", "path=/"} <= attributes
    finally:
        stopped(srv)
