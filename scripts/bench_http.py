"""Remote unlocks per second with a durable audit log, against aiohttp hello-world.

Starts ``passbridge serve`` (temporary site and database) and an aiohttp
hello-world server, each in its own process, drives both with the same
bounded loopback load (10 concurrent clients, a fixed request count), and
times the crypto every unlock must do (backend-token verify, factor-token
sign and verify) raw in this process. Stops by itself.

    .venv/bin/python scripts/bench_http.py [--requests 3000] [--clients 10]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from passbridge.clock import SystemClock
from passbridge.core.model import Factor, Side
from passbridge.core.tokens import (
    FactorTokenMinter,
    FactorTokenVerifier,
    ReplayCache,
    VerificationKey,
    generate_private_key,
    private_key_to_pem,
    public_key_to_pem,
    verify_backend_request,
)
from passbridge.service.sim_client import backend_token

SERVE_PREFIX = ["-m", "passbridge"]
READY = re.compile(r"http://([\d.]+):(\d+)")
BACKEND = "bench-backend"


def hello_world_main() -> None:
    from aiohttp import web

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="Hello, world")

    app = web.Application()
    app.router.add_get("/", hello)

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        print(f"hello-world on http://{host}:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


def start(cmd: list[str], cwd: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=cwd)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        found = READY.search(line)
        if found:
            return proc, f"http://{found.group(1)}:{found.group(2)}"
    proc.kill()
    raise SystemExit(f"could not start {' '.join(cmd)}")


async def drive(url: str, requests: list[tuple[str, dict[str, str]]], method: str,
                clients: int) -> tuple[float, list[float]]:
    """Fire every request with ``clients`` in flight; return elapsed s and latencies."""
    latencies: list[float] = []
    queue = list(reversed(requests))
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while queue:
                path, headers = queue.pop()
                t0 = time.perf_counter()
                async with session.request(method, url + path, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise SystemExit(f"{path}: HTTP {resp.status}")
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - started, latencies


def crypto_floor(n: int) -> float:
    """Unlocks/s if the server did nothing but the unlock's signatures."""
    clock = SystemClock()
    backend = generate_private_key("ES256")
    bridge = generate_private_key("ES256")
    keys = {BACKEND: VerificationKey(BACKEND, "ES256", backend.public_key(), BACKEND)}  # type: ignore[union-attr]
    minter = FactorTokenMinter("b", bridge, site_id="bench", clock=clock)
    verifier = FactorTokenVerifier(
        "bench", {"b": VerificationKey("b", "ES256", bridge.public_key(), "b")},  # type: ignore[union-attr]
        clock=clock)
    cache = ReplayCache()
    tokens = [backend_token(backend, "ES256", backend=BACKEND, site="bench", user="u",
                            door="d", now=time.time()) for _ in range(n)]
    started = time.perf_counter()
    for token in tokens:
        checked = verify_backend_request(token, keys, site_id="bench", clock=clock,
                                         replay_cache=cache, door="d")
        assert checked.ok
        factor = minter.mint(user="u", door="d", side=Side.IN, factor=Factor.REMOTE,
                             credential="backend:x", evidence={})
        assert verifier.verify(factor).ok
    return n / (time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--hello-world", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hello_world:
        hello_world_main()
        return 0

    with tempfile.TemporaryDirectory(prefix="pb-bench-") as tmp_name:
        tmp = Path(tmp_name)
        key = generate_private_key("ES256")
        (tmp / "backend.pub.pem").write_text(public_key_to_pem(key))
        (tmp / "backend.key.pem").write_text(private_key_to_pem(key))
        site = {
            "site": {"id": "bench", "timezone": "UTC"},
            "doors": [{"id": "front", "reader": True, "keypad": True}],
            "trust": {"backends": [{"id": BACKEND, "alg": "ES256",
                                    "public_key_file": "backend.pub.pem"}]},
            "users": [{"id": "alice", "cards": ["1"], "pin": "2468", "doors": "all",
                       "remote_unlock": True}],
        }
        (tmp / "site.yaml").write_text(yaml.safe_dump(site))
        server, url = start([sys.executable, *SERVE_PREFIX, "serve", "--site",
                             str(tmp / "site.yaml"), "--db", str(tmp / "db" / "pb.sqlite3"),
                             "--port", "0"], tmp)
        hello, hello_url = start([sys.executable, __file__, "--hello-world"], tmp)
        try:
            total = args.warmup + args.requests
            now = time.time()
            remote = [("/v1/doors/front/remote-unlock", {"Authorization": "Bearer " + backend_token(
                key, "ES256", backend=BACKEND, site="bench", user="alice", door="front",
                now=now, lifetime=60)}) for _ in range(total)]
            plain = [("/", {}) for _ in range(total)]

            async def run() -> tuple[tuple[float, list[float]], tuple[float, list[float]]]:
                await drive(hello_url, plain[: args.warmup], "GET", args.clients)
                hw = await drive(hello_url, plain[args.warmup:], "GET", args.clients)
                await drive(url, remote[: args.warmup], "POST", args.clients)
                pb = await drive(url, remote[args.warmup:], "POST", args.clients)
                return hw, pb

            (hw_time, hw_lat), (pb_time, pb_lat) = asyncio.run(run())
        finally:
            server.terminate()
            hello.terminate()
            server.communicate(timeout=20)
            hello.communicate(timeout=20)
        floor = crypto_floor(2000)

    hw_rate = args.requests / hw_time
    pb_rate = args.requests / pb_time
    print(f"load: {args.requests} requests, {args.clients} concurrent clients, loopback")
    print(f"hello-world:    {hw_rate:8.0f} req/s   p50 {statistics.median(hw_lat) * 1e3:6.2f} ms"
          f"   p99 {pct(hw_lat, 0.99) * 1e3:6.2f} ms")
    print(f"remote unlock:  {pb_rate:8.0f} req/s   p50 {statistics.median(pb_lat) * 1e3:6.2f} ms"
          f"   p99 {pct(pb_lat, 0.99) * 1e3:6.2f} ms   (durable audit, group commit)")
    print(f"crypto floor:   {floor:8.0f} unlocks/s (backend verify + factor sign + verify, "
          "one thread)")
    print(f"ratio to hello-world: {pb_rate / hw_rate:.2f} (target >= 0.35)")
    print(f"ratio to crypto floor: {pb_rate / floor:.2f}")
    print(f"p99 target < 10 ms: {'met' if pct(pb_lat, 0.99) < 0.010 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
