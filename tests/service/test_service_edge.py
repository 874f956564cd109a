"""The service's edge on a real aiohttp server and real loopback sockets:
JSON errors aiohttp answers before any route, the Server header, no door
enumeration by 404 vs 401, live event streams that end, connection limits.

Raw sockets send what aiohttp's own client never would (a broken request
line, oversized headers, a body that never finishes)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from passbridge.core.model import Side
from passbridge.protocol.ble_advert import format_adv_id
from passbridge.service.app import create_app
from passbridge.service.edge import MAX_HEADERS, EdgeSite, tls_context
from passbridge.service.http import HttpLimits
from tests.service_support import (
    Rig,
    admin_token,
    backend_token,
    make_rig,
    nearby_token,
    remote_token,
)

# Generous bounds for a loaded 2-core machine; the limits under test are far shorter.
ANSWER_WITHIN = 10.0


@dataclasses.dataclass
class Edge:
    rig: Rig
    site: EdgeSite
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


async def _start(limits: HttpLimits, tls: ssl.SSLContext | None = None
                 ) -> tuple[web.AppRunner, Edge]:
    rig = make_rig()
    runner = web.AppRunner(create_app(rig.services, limits=limits), access_log=None)
    await runner.setup()
    site = EdgeSite(runner, "127.0.0.1", 0, limits=limits, metrics=rig.services.metrics,
                    ssl_context=tls)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, Edge(rig, site, host, port)


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    runner, served = await _start(HttpLimits())
    yield served
    await runner.cleanup()


@pytest.fixture
async def tight() -> AsyncIterator[Edge]:
    """Short limits, so that timeouts and the cap show within a test."""
    runner, served = await _start(HttpLimits(
        header_timeout=1.0, body_timeout=1.0, idle_timeout=2.0, max_connections=8,
        event_stream_seconds=1.0))
    yield served
    await runner.cleanup()


@dataclasses.dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes


async def raw_exchange(edge: Edge, request: bytes) -> Raw:
    """Send bytes as they are; read the whole answer (the server closes after errors)."""
    reader, writer = await asyncio.open_connection(edge.host, edge.port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), ANSWER_WITHIN)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Raw(int(status_line.split()[1]), headers, body)


def assert_json_error(answer: Raw, status: int, code: str) -> None:
    assert answer.status == status, answer
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    assert answer.headers["server"] == "passbridge"
    length = int(answer.headers["content-length"])
    body = json.loads(answer.body[:length])
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code


# --- errors before routing ------------------------------------------------------


async def test_protocol_level_errors_are_the_json_error_shape(edge: Edge) -> None:
    big_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n"
    assert_json_error(await raw_exchange(edge, big_header), 431, "header_too_large")
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 10))
    too_many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
    assert_json_error(await raw_exchange(edge, too_many), 431, "header_too_large")
    long_line = b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert_json_error(await raw_exchange(edge, long_line), 431, "header_too_large")
    assert_json_error(await raw_exchange(edge, b"HELLO THERE\r\n\r\n"), 400, "bad_request")
    bad_version = b"GET /healthz HTTP/9.Z\r\nHost: x\r\n\r\n"
    assert_json_error(await raw_exchange(edge, bad_version), 400, "bad_request")
    bad_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n"
    assert_json_error(await raw_exchange(edge, bad_header), 400, "bad_request")
    expect = (b"POST /v1/factors HTTP/1.1\r\nHost: x\r\nExpect: nonsense\r\n"
              b"Content-Length: 5\r\nConnection: close\r\n\r\nhello")
    assert_json_error(await raw_exchange(edge, expect), 417, "expectation_failed")
    # Bodies are not decompressed: a gzip body is just a malformed one, never a 500.
    gzipped = (b"PUT /v1/site/lockdown HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
               b"Authorization: Bearer " + admin_token(edge.rig.keys, edge.rig.clock).encode()
               + b"\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
    assert_json_error(await raw_exchange(edge, gzipped), 400, "malformed_body")
    # The parser's message quotes the client's bytes; the answer does not echo them.
    marker = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-\x01secret-marker: 1\r\n\r\n"
    answer = await raw_exchange(edge, marker)
    assert answer.status == 400 and b"secret-marker" not in answer.body


async def test_route_errors_and_answers_name_no_versions(edge: Edge) -> None:
    unknown = await raw_exchange(edge, b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\n"
                                       b"Connection: close\r\n\r\n")
    assert_json_error(unknown, 404, "not_found")
    wrong = await raw_exchange(edge, b"DELETE /v1/doors HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\n\r\n")
    assert_json_error(wrong, 405, "method_not_allowed")
    too_big = await raw_exchange(edge, b"POST /v1/factors HTTP/1.1\r\nHost: x\r\n"
                                       b"Connection: close\r\nContent-Length: 70000\r\n\r\n"
                                       + b"a" * 70_000)
    assert_json_error(too_big, 413, "request_too_large")
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/metrics", "/v1/openapi.json"):
            async with session.get(edge.url + path) as resp:
                assert resp.status == 200
                assert resp.headers["Server"] == "passbridge", path
        async with session.get(edge.url + "/v1/events", headers={
                "Authorization": f"Bearer {admin_token(edge.rig.keys, edge.rig.clock)}",
                "Accept": "text/event-stream"}) as stream:
            assert stream.headers["Server"] == "passbridge"


# --- authenticate before the door ---------------------------------------------


async def test_unknown_door_is_401_to_an_unauthenticated_caller(edge: Edge) -> None:
    r = edge.rig
    junk_nearby = nearby_token(r.keys.phones["bob-phone"], r.clock, cred="mallory-phone",
                               door="nowhere", adv=format_adv_id(bytes(8)))
    async with aiohttp.ClientSession(edge.url) as session:
        for door in ("front", "nowhere"):
            calls: list[tuple[str, str, dict[str, Any]]] = [
                ("POST", f"/v1/doors/{door}/remote-unlock", {}),
                ("POST", f"/v1/doors/{door}/remote-unlock",
                 {"headers": {"Authorization": "Bearer x.y.z"}}),
                ("POST", f"/v1/doors/{door}/nearby-unlock", {"data": junk_nearby}),
                ("POST", f"/v1/doors/{door}/card", {"json": {"number": "1"}}),
                ("POST", f"/v1/doors/{door}/keypad",
                 {"json": {"code": "1"}, "headers": {"Authorization": "Bearer wrong-key"}}),
                ("GET", f"/v1/doors/{door}", {}),
                ("PUT", f"/v1/doors/{door}/override", {"json": {"state": None}}),
            ]
            for method, path, kwargs in calls:
                async with session.request(method, path, **kwargs) as resp:
                    assert resp.status == 401, (method, path, await resp.text())
        # A caller who proved who they are still learns that a door is unknown.
        admin = {"Authorization": f"Bearer {admin_token(r.keys, r.clock)}"}
        async with session.get("/v1/doors/nowhere", headers=admin) as resp:
            assert resp.status == 404
        # A device key speaks for its own door side only: any other door,
        # existing or not, is 403 (docs/decisions.md, "Device keys").
        async with session.post("/v1/doors/nowhere/card", json={"number": "1"},
                                headers={"Authorization":
                                         f"Bearer {r.device('side', 'reader')}"}) as resp:
            assert resp.status == 403
        remote = {"Authorization": f"Bearer {remote_token(r.keys, r.clock, 'nowhere')}"}
        async with session.post("/v1/doors/nowhere/remote-unlock", headers=remote) as resp:
            assert resp.status == 404


# --- live event streams end -------------------------------------------------------


async def read_sse(resp: aiohttp.ClientResponse) -> list[dict[str, str]]:
    """Every event of a stream, until the server ends it."""
    events: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if fields:
                events.append(fields)
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value
    return events


@pytest.mark.slow
async def test_stream_ends_when_the_admin_token_expires_and_resumes_by_last_event_id(
    edge: Edge,
) -> None:
    r = edge.rig
    async with aiohttp.ClientSession(edge.url) as session:
        for number in ("20002", "10001"):
            await session.post("/v1/doors/side/card", json={"number": number},
                               headers={"Authorization": f"Bearer {r.device('side', 'reader')}"})
        now = int(r.clock.now().timestamp())
        short = backend_token(r.keys.backend, r.clock, sub="alice", role="site_admin",
                              exp=now + 2)
        started = time.monotonic()
        async with session.get("/v1/events", headers={
                "Authorization": f"Bearer {short}", "Accept": "text/event-stream"}) as resp:
            events = await asyncio.wait_for(read_sse(resp), ANSWER_WITHIN)
        assert time.monotonic() - started >= 1.5  # not before the token's exp
        assert [e.get("id") for e in events] == ["1", "2", None]
        assert events[-1]["event"] == "end"
        assert json.loads(events[-1]["data"]) == {"reason": "credentials_expired"}
        # Meanwhile more happened; a fresh token and Last-Event-ID pick up after 2.
        await session.post("/v1/doors/side/card", json={"number": "30003"},
                           headers={"Authorization": f"Bearer {r.device('side', 'reader')}"})
        again = backend_token(r.keys.backend, r.clock, sub="alice", role="site_admin",
                              exp=now + 1)
        async with session.get("/v1/events", headers={
                "Authorization": f"Bearer {again}", "Accept": "text/event-stream",
                "Last-Event-ID": "2"}) as resp:
            resumed = await asyncio.wait_for(read_sse(resp), ANSWER_WITHIN)
    assert [e.get("id") for e in resumed] == ["3", None]
    assert json.loads(resumed[0]["data"])["user"] == "carol"


@pytest.mark.slow
async def test_stream_ends_after_the_longest_allowed(tight: Edge) -> None:
    r = tight.rig
    async with aiohttp.ClientSession(tight.url) as session, session.get(
            "/v1/events", headers={"Authorization": f"Bearer {admin_token(r.keys, r.clock)}",
                                   "Accept": "text/event-stream"}) as resp:
        events = await asyncio.wait_for(read_sse(resp), ANSWER_WITHIN)
    assert events == [{"event": "end", "data": '{"reason": "max_duration"}'}]


async def test_stream_ends_when_its_caller_is_no_longer_a_site_admin(edge: Edge) -> None:
    r = edge.rig
    async with aiohttp.ClientSession(edge.url) as session, session.get(
            "/v1/events", headers={"Authorization": f"Bearer {admin_token(r.keys, r.clock)}",
                                   "Accept": "text/event-stream"}) as resp:
        assert resp.status == 200
        users = r.services.site.users
        users["alice"] = dataclasses.replace(users["alice"], enabled=False)
        # The next audit record wakes the stream, which checks its caller first.
        await session.post("/v1/doors/side/card", json={"number": "20002"},
                           headers={"Authorization": f"Bearer {r.device('side', 'reader')}"})
        events = await asyncio.wait_for(read_sse(resp), ANSWER_WITHIN)
    assert events[-1] == {"event": "end", "data": '{"reason": "not_site_admin"}'}
    assert all(e.get("event") != "decision" for e in events)


# --- connection limits (short ones; the process test holds thousands) ----------


async def wait_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing (a reset counts as closed)."""
    try:
        return await asyncio.wait_for(reader.read(), ANSWER_WITHIN)
    except ConnectionResetError:
        return b""


@contextlib.asynccontextmanager
async def served(limits: HttpLimits, tls: ssl.SSLContext | None = None
                 ) -> AsyncIterator[Edge]:
    runner, edge = await _start(limits, tls)
    try:
        yield edge
    finally:
        await runner.cleanup()


@pytest.mark.slow
async def test_slow_head_and_slow_body_are_closed_at_their_own_timeouts() -> None:
    # The idle timeout is far off: only the header and body timeouts can close these.
    limits = HttpLimits(header_timeout=1.0, body_timeout=1.0, idle_timeout=60.0)
    async with served(limits) as edge:
        opened = time.monotonic()
        head_r, head_w = await asyncio.open_connection(edge.host, edge.port)
        head_w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        body_r, body_w = await asyncio.open_connection(edge.host, edge.port)
        body_w.write(b"POST /v1/factors HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")

        async def drip(writer: asyncio.StreamWriter) -> None:
            for _ in range(100):  # a byte every 0.1 s keeps a naive server waiting for ever
                await asyncio.sleep(0.1)
                writer.write(b"a")

        drips = [asyncio.create_task(drip(head_w)), asyncio.create_task(drip(body_w))]
        head_seen = await wait_closed(head_r)
        head_at = time.monotonic() - opened
        body_seen = await wait_closed(body_r)
        body_at = time.monotonic() - opened
        for task in drips:
            task.cancel()
        head_w.close()
        body_w.close()
    assert head_seen == b"" and head_at >= 0.9
    assert body_seen.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in body_seen
    assert b"Server: passbridge" in body_seen and body_at >= 0.9


@pytest.mark.slow
async def test_idle_connections_are_closed_and_busy_ones_are_not() -> None:
    async with served(HttpLimits(idle_timeout=2.0)) as edge:
        opened = time.monotonic()
        idle_r, idle_w = await asyncio.open_connection(edge.host, edge.port)
        # One keep-alive connection sending a whole request every 0.5 s for 4 s
        # is answered every time on the same socket.
        busy_r, busy_w = await asyncio.open_connection(edge.host, edge.port)
        for _ in range(8):
            busy_w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(busy_r.readuntil(b"\r\n\r\n"), ANSWER_WITHIN)
            assert head.startswith(b"HTTP/1.1 200 ")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            await busy_r.readexactly(length)
            await asyncio.sleep(0.5)
        busy_w.close()
        idle_seen = await wait_closed(idle_r)
        idle_at = time.monotonic() - opened
        idle_w.close()
    assert idle_seen == b"" and idle_at >= 1.9


async def test_connections_over_the_cap_are_closed_at_once(tight: Edge) -> None:
    held = [await asyncio.open_connection(tight.host, tight.port) for _ in range(8)]
    await asyncio.sleep(0.2)
    assert tight.site.open_connections == 8
    extra_r, extra_w = await asyncio.open_connection(tight.host, tight.port)
    extra_w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await wait_closed(extra_r) == b""
    extra_w.close()
    # A slot that frees is usable again.
    held[0][1].close()
    await asyncio.sleep(0.2)
    async with aiohttp.ClientSession(tight.url) as session, session.get("/metrics") as resp:
        text = await resp.text()
    assert "passbridge_http_connections_refused_total 1" in text
    assert "passbridge_http_connections_open 8" in text
    for _, writer in held[1:]:
        writer.close()


@pytest.mark.slow
async def test_a_tls_handshake_that_never_comes_is_closed_at_the_header_timeout(
    tmp_path: Path,
) -> None:
    from tests.process.test_service_edge_process import make_certificate

    cert, key = make_certificate(tmp_path)
    # Before the handshake aiohttp's own keep-alive clock is not running yet;
    # asyncio's handshake timeout (default 60 s) is set to the header timeout.
    limits = HttpLimits(header_timeout=1.0, idle_timeout=60.0)
    async with served(limits, tls_context(cert, key)) as edge:
        opened = time.monotonic()
        reader, writer = await asyncio.open_connection(edge.host, edge.port)
        writer.write(b"\x16\x03\x01")  # the first bytes of a ClientHello, and no more
        assert await wait_closed(reader) == b""
        closed_at = time.monotonic() - opened
        writer.close()
        async with aiohttp.ClientSession() as session, session.get(
                f"https://{edge.host}:{edge.port}/healthz",
                ssl=ssl.create_default_context(cafile=str(cert))) as resp:
            assert resp.status == 200
    assert closed_at >= 0.9


async def test_a_client_leaving_mid_body_is_no_error_in_the_log(
    edge: Edge, caplog: pytest.LogCaptureFixture,
) -> None:
    for _ in range(3):
        reader, writer = await asyncio.open_connection(edge.host, edge.port)
        writer.write(b"POST /v1/factors HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        await asyncio.sleep(0.2)
        writer.write_eof()
        assert await wait_closed(reader) == b""
        writer.close()
    async with aiohttp.ClientSession(edge.url) as session, session.get("/healthz") as resp:
        assert resp.status == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


@pytest.mark.slow
async def test_a_stream_whose_reader_stops_reading_still_ends(edge: Edge) -> None:
    """The 15-minute and token bounds hold even for a client that never reads:
    a write that cannot complete by then drops the connection."""
    r = edge.rig
    for _ in range(30_000):  # about 10 MB of events, more than the socket buffers hold
        await r.services.controller.card("side", "20002", Side.IN)
    now = int(r.clock.now().timestamp())
    token = backend_token(r.keys.backend, r.clock, sub="alice", role="site_admin", exp=now + 2)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (edge.host, edge.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"GET /v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                 b"Authorization: Bearer " + token.encode() + b"\r\n\r\n")
    await asyncio.sleep(0.5)
    assert edge.site.open_connections == 1  # streaming, and stuck: nobody reads
    deadline = time.monotonic() + 3 * ANSWER_WITHIN
    while edge.site.open_connections and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    writer.close()
    assert edge.site.open_connections == 0


@pytest.mark.slow
async def test_a_client_that_never_reads_its_answers_is_closed() -> None:
    """Requests sent back to back while nothing is read: once the answers fill
    the socket buffers, an answer not taken within the body timeout drops the
    connection (else a handful of such clients would hold slots for ever)."""
    async with served(HttpLimits(body_timeout=1.0, idle_timeout=60.0)) as edge:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (edge.host, edge.port))
        _, writer = await asyncio.open_connection(sock=sock)
        # ~20 KiB per answer: 600 of them are more than the kernel buffers hold.
        for _ in range(600):
            writer.write(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        deadline = time.monotonic() + 3 * ANSWER_WITHIN
        while edge.site.open_connections and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        writer.close()
        assert edge.site.open_connections == 0
