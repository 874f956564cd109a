"""Remote unlocks per second with a durable audit log, against aiohttp hello-world.

Starts ``passbridge serve`` (temporary site and database) and an aiohttp
hello-world server, each in its own process, drives both with the same
bounded loopback load (10 concurrent clients, a fixed request count per
round), and times the crypto every unlock must do (one PyJWT verify of the
backend's request, which the core then decides on as it is; no factor token
is minted for a remote unlock) raw in this process. Stops by itself.

The two servers are measured in alternating rounds and the report gives
medians: on a small shared machine one run can be 20% off either way, and
a slow moment then hits both sides of a round alike.

    .venv/bin/python scripts/bench_http.py [--requests 3000] [--clients 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
from passbridge.core.tokens import (
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

    # The same event loop as ``passbridge serve`` (uvloop where installed), so
    # the ratio compares the application, not the loops.
    from passbridge.cli.serve import run_event_loop

    run_event_loop(run())  # type: ignore[arg-type]


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
    """Unlocks/s if the server did nothing but the unlock's token work.

    As the service does it: the backend JWT verified once, with PyJWT, by the
    core's verifier; the verified request is what the core decides on.
    """
    clock = SystemClock()
    backend = generate_private_key("ES256")
    keys = {BACKEND: VerificationKey(BACKEND, "ES256", backend.public_key(), BACKEND)}
    cache = ReplayCache()
    tokens = [backend_token(backend, "ES256", backend=BACKEND, site="bench", user="u",
                            door="d", now=time.time()) for _ in range(n)]
    started = time.perf_counter()
    for token in tokens:
        checked = verify_backend_request(token, keys, site_id="bench", clock=clock,
                                         replay_cache=cache, door="d")
        assert checked.ok
    return n / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> tuple[float, float] | None:
    """CPU seconds (user + system) a process has used on its main thread and on
    all its other threads (for ``serve``: the audit writer), from /proc; None
    where there is no /proc (the report then leaves the CPU line out)."""
    tick = os.sysconf("SC_CLK_TCK")
    main = others = 0.0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            used = (int(fields[11]) + int(fields[12])) / tick
            if int(tid) == pid:
                main += used
            else:
                others += used
    except (OSError, ValueError, IndexError):
        return None
    return main, others


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating rounds of each server; the report gives medians")
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
            n, rounds = args.requests, args.rounds
            now = time.time()
            remote = [("/v1/doors/front/remote-unlock", {"Authorization": "Bearer " + backend_token(
                key, "ES256", backend=BACKEND, site="bench", user="alice", door="front",
                now=now, lifetime=60)}) for _ in range(args.warmup + n * rounds)]
            plain: list[tuple[str, dict[str, str]]] = [("/", {}) for _ in range(args.warmup + n)]

            async def run() -> tuple[list[float], list[float], list[float], list[float]]:
                await drive(hello_url, plain[: args.warmup], "GET", args.clients)
                await drive(url, remote[: args.warmup], "POST", args.clients)
                hw_rates: list[float] = []
                pb_rates: list[float] = []
                hw_lat: list[float] = []
                pb_lat: list[float] = []
                for r in range(rounds):
                    batch = remote[args.warmup + r * n: args.warmup + (r + 1) * n]
                    sides = [("hw", hello_url, plain[args.warmup:], "GET", hello.pid),
                             ("pb", url, batch, "POST", server.pid)]
                    for name, target, requests, method, pid in (
                            sides if r % 2 == 0 else sides[::-1]):
                        before = cpu_seconds(pid)
                        elapsed, lat = await drive(target, requests, method, args.clients)
                        after = cpu_seconds(pid)
                        (hw_rates if name == "hw" else pb_rates).append(n / elapsed)
                        (hw_lat if name == "hw" else pb_lat).extend(lat)
                        if before is not None and after is not None:
                            cpu[name].append(((after[0] - before[0]) / n,
                                              (after[1] - before[1]) / n))
                return hw_rates, pb_rates, hw_lat, pb_lat

            cpu: dict[str, list[tuple[float, float]]] = {"hw": [], "pb": []}
            hw_rates, pb_rates, hw_lat, pb_lat = asyncio.run(run())
        finally:
            server.terminate()
            hello.terminate()
            server.communicate(timeout=20)
            hello.communicate(timeout=20)
        floor = crypto_floor(2000)

    hw_rate = statistics.median(hw_rates)
    pb_rate = statistics.median(pb_rates)
    ratio = statistics.median(p / h for p, h in zip(pb_rates, hw_rates, strict=True))

    def spread(rates: list[float]) -> str:
        return f"(rounds {min(rates):,.0f}-{max(rates):,.0f})"

    print(f"load: {args.requests} requests per round, {args.rounds} alternating rounds, "
          f"{args.clients} concurrent clients, loopback; medians")
    print(f"hello-world:    {hw_rate:8.0f} req/s   p50 {statistics.median(hw_lat) * 1e3:6.2f} ms"
          f"   p99 {pct(hw_lat, 0.99) * 1e3:6.2f} ms   {spread(hw_rates)}")
    print(f"remote unlock:  {pb_rate:8.0f} req/s   p50 {statistics.median(pb_lat) * 1e3:6.2f} ms"
          f"   p99 {pct(pb_lat, 0.99) * 1e3:6.2f} ms   {spread(pb_rates)}   "
          "(durable audit, group commit)")
    print(f"crypto floor:   {floor:8.0f} unlocks/s (the backend request's one PyJWT verify, "
          "one thread)")
    if cpu["hw"] and cpu["pb"]:
        # Less noisy than the rates on a shared machine: what each request cost
        # the server itself, whatever else ran meanwhile.
        hw_us = statistics.median(m + o for m, o in cpu["hw"]) * 1e6
        pb_loop = statistics.median(m for m, _ in cpu["pb"]) * 1e6
        pb_other = statistics.median(o for _, o in cpu["pb"]) * 1e6
        print(f"server CPU per request: hello-world {hw_us:.0f} us; remote unlock "
              f"{pb_loop:.0f} us on the event loop + {pb_other:.0f} us in other threads "
              "(the audit writer)")
    print(f"ratio to hello-world: {ratio:.2f} (median of per-round ratios; target >= 0.35)")
    print(f"ratio to crypto floor: {pb_rate / floor:.2f}")
    met = ratio >= 0.35 and pct(pb_lat, 0.99) < 0.010
    print(f"p99 target < 10 ms: {'met' if pct(pb_lat, 0.99) < 0.010 else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
