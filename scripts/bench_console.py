"""The console's live streams against the doors: 20 browsers' worth of
server-sent event streams open on ``GET /v1/events``, and what they cost.

Starts ``passbridge serve`` (temporary site and database) and drives it with
remote unlocks (10 concurrent clients by default, tokens signed up front), in
alternating rounds: with no stream open, and with ``--streams`` (20) live
streams held by a separate process (as browsers are: their reading does not
share the load driver's CPU). It reports

- decision latency (an unlock's HTTP round trip: decided, committed to the
  SQLite audit log, answered), p50/p99, with and without the streams, and
  their ratio (target: with/without <= 1.2, the console must not slow doors);
- commit to event: from each decision's ``at`` (stamped when decided, just
  before its durable write) to its event's arrival at each stream client,
  p50/p99 over all streams; the same with one stream as its baseline, and
  with the 20 streams at people's pace (a decision every 100 ms). Under the
  full load a stream writes at most every 50 ms (routes_events: records
  within that go out together), so that figure is about half of 50 ms more.

Both processes read one wall clock (same machine). Medians over rounds; on a
small shared machine one round can be 20% off either way.

    .venv/bin/python scripts/bench_console.py [--requests 600] [--clients 10]
        [--streams 20] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import yaml

from passbridge.core.tokens import generate_private_key, private_key_to_pem, public_key_to_pem
from passbridge.service.sim_client import backend_token, load_backend_key

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http import drive, pct, start  # noqa: E402 (a sibling script)

BACKEND = "bench-backend"
# A decision's frame: its seq (the id line) and its "at" (the data's shape is
# the audit row's: service/events.py).
DECISION = re.compile(rb'^id: (?P<seq>\d+)\nevent: decision\n.*?"at":"(?P<at>[^"]+)"', re.S)
SITE = "bench"
PACED = 50  # decisions at people's pace


def admin_header(key_file: Path) -> dict[str, str]:
    key, alg = load_backend_key(key_file)
    token = backend_token(key, alg, backend=BACKEND, site=SITE, user="admin", door=None,
                          role="site_admin", lifetime=60, now=time.time())
    return {"Authorization": f"Bearer {token}"}


async def audit_head(url: str, key_file: Path) -> int:
    async with aiohttp.ClientSession() as session, session.get(
            f"{url}/v1/audit/head", headers=admin_header(key_file)) as resp:
        return int((await resp.json())["seq"])


# --- the stream process: N live streams, each stamping what arrives ------------------


async def hold_streams(url: str, key_file: Path, count: int) -> None:
    """Open ``count`` streams after the log's head; print ``ready``; read the
    last seq to wait for on stdin; print each event's delay (s) as JSON."""
    after = await audit_head(url, key_file)
    delays: list[float] = []
    seen = [after] * count
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        responses = []
        for _ in range(count):
            # Each its own token and connection, as each browser has its own session.
            resp = await session.get(f"{url}/v1/events?stream=1&after={after}",
                                     headers=admin_header(key_file))
            assert resp.status == 200, resp.status
            responses.append(resp)

        async def read(index: int, resp: aiohttp.ClientResponse) -> None:
            # Whatever has arrived, at once (as a browser's EventSource takes it),
            # not a line at a time: this process stands in for 20 machines.
            rest = b""
            async for chunk in resp.content.iter_any():
                arrived = time.time()
                frames = (rest + chunk).split(b"\n\n")
                rest = frames.pop()
                for frame in frames:
                    # Only the two fields needed, without decoding the whole
                    # record: this process's CPU is the machine's too.
                    found = DECISION.search(frame)
                    if found is not None:
                        decided = datetime.fromisoformat(found["at"].decode()).timestamp()
                        delays.append(arrived - decided)
                        seen[index] = int(found["seq"])

        readers = [asyncio.create_task(read(i, r)) for i, r in enumerate(responses)]
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        last = int(line)
        deadline = time.monotonic() + 30
        while min(seen) < last and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in readers:
            task.cancel()
        for resp in responses:
            resp.close()
    print(json.dumps({"delays": delays, "complete": min(seen) >= last}), flush=True)


class Streams:
    """A child process holding the streams for one round."""

    def __init__(self, url: str, key_file: Path, count: int) -> None:
        # Niced: the browsers' own reading runs on other machines, not on the
        # service's cores (this process's CPU is reported apart).
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--streams-child", url, str(key_file), str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=lambda: os.nice(10))
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise SystemExit("the stream process did not start")
        self.started_cpu = cpu_seconds(self.proc.pid)  # after its imports and connects

    def finish(self, last_seq: int) -> list[float]:
        self.cpu = cpu_seconds(self.proc.pid) - self.started_cpu
        out, _ = self.proc.communicate(f"{last_seq}\n", timeout=60)
        result = json.loads(out.strip().splitlines()[-1])
        if not result["complete"]:
            raise SystemExit("a stream missed events")
        return list(result["delays"])


# --- the driver -------------------------------------------------------------------


def unlocks(key_file: Path, n: int) -> list[tuple[str, dict[str, str]]]:
    """``n`` remote unlocks, signed now (each token lives 60 s: one round)."""
    key, alg = load_backend_key(key_file)
    now = time.time()
    return [("/v1/doors/front/remote-unlock", {"Authorization": "Bearer " + backend_token(
        key, alg, backend=BACKEND, site=SITE, user="alice", door="front", now=now,
        lifetime=60)}) for _ in range(n)]


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time so far (Linux /proc): what a
    round cost the service, whatever else the machine was doing meanwhile."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ms(values: list[float], q: float) -> float:
    return (statistics.median(values) if q == 0.5 else pct(values, q)) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=600, help="unlocks per round")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10,
                        help="rounds of each kind, alternating; the report gives medians")
    parser.add_argument("--streams-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.streams_child:
        url, key_file, count = args.streams_child
        from passbridge.cli.serve import run_event_loop  # uvloop, as the service has

        async def child() -> int:
            await hold_streams(url, Path(key_file), int(count))
            return 0

        return run_event_loop(child())

    with tempfile.TemporaryDirectory(prefix="pb-bench-console-") as tmp_name:
        tmp = Path(tmp_name)
        key = generate_private_key("ES256")
        (tmp / "backend.pub.pem").write_text(public_key_to_pem(key))
        key_file = tmp / "backend.key.pem"
        key_file.write_text(private_key_to_pem(key))
        site = {
            "site": {"id": SITE, "timezone": "UTC"},
            "doors": [{"id": "front", "reader": True, "keypad": True}],
            "trust": {"backends": [{"id": BACKEND, "alg": "ES256",
                                    "public_key_file": "backend.pub.pem"}]},
            "users": [
                {"id": "alice", "cards": ["1"], "pin": "2468", "doors": "all",
                 "remote_unlock": True},
                {"id": "admin", "role": "site_admin", "cards": ["2"], "pin": "1357",
                 "doors": "all"},
            ],
        }
        (tmp / "site.yaml").write_text(yaml.safe_dump(site))
        server, url = start([sys.executable, "-m", "passbridge", "serve", "--site",
                             str(tmp / "site.yaml"), "--db", str(tmp / "db" / "pb.sqlite3"),
                             "--port", "0"], tmp)
        quiet: list[float] = []  # decision latencies, no stream open
        busy: list[float] = []  # with the streams
        quiet_p50: list[float] = []
        busy_p50: list[float] = []
        delays: list[float] = []  # commit to event, many streams
        single: list[float] = []  # commit to event, one stream
        paced: list[float] = []  # commit to event, many streams, one decision at a time
        quiet_cpu: list[float] = []  # service CPU seconds per decision, by round
        busy_cpu: list[float] = []
        reader_cpu: list[float] = []  # the stream process's CPU per decision
        try:
            asyncio.run(drive(url, unlocks(key_file, 200), "POST", args.clients))  # warm-up
            one = Streams(url, key_file, 1)
            asyncio.run(drive(url, unlocks(key_file, args.requests), "POST", args.clients))
            single = one.finish(asyncio.run(audit_head(url, key_file)))
            # A site at people's pace: one decision every 100 ms, 20 streams.
            paced_streams = Streams(url, key_file, args.streams)

            async def paced_unlocks() -> None:
                for request in unlocks(key_file, PACED):
                    await drive(url, [request], "POST", 1)
                    await asyncio.sleep(0.1)

            asyncio.run(paced_unlocks())
            paced = paced_streams.finish(asyncio.run(audit_head(url, key_file)))
            for r in range(args.rounds * 2):
                with_streams = (r % 4) in (1, 2)  # quiet, busy, busy, quiet, ...
                streams = Streams(url, key_file, args.streams) if with_streams else None
                requests = unlocks(key_file, args.requests)
                cpu = cpu_seconds(server.pid)
                _, lat = asyncio.run(drive(url, requests, "POST", args.clients))
                (busy_cpu if with_streams else quiet_cpu).append(
                    (cpu_seconds(server.pid) - cpu) / args.requests)
                (busy if with_streams else quiet).extend(lat)
                (busy_p50 if with_streams else quiet_p50).append(statistics.median(lat))
                if streams is not None:
                    delays.extend(streams.finish(asyncio.run(audit_head(url, key_file))))
                    reader_cpu.append(streams.cpu / args.requests)
        finally:
            server.terminate()
            server.communicate(timeout=20)

    ratio = statistics.median(busy_p50) / statistics.median(quiet_p50)
    print(f"load: {args.requests} remote unlocks per round, {args.clients} concurrent clients, "
          f"{args.rounds} rounds with and {args.rounds} without {args.streams} live streams, "
          "loopback")
    print(f"decision latency, no streams:    p50 {ms(quiet, 0.5):6.2f} ms   "
          f"p99 {ms(quiet, 0.99):6.2f} ms")
    print(f"decision latency, {args.streams:2d} streams:    p50 {ms(busy, 0.5):6.2f} ms   "
          f"p99 {ms(busy, 0.99):6.2f} ms")
    print(f"commit to event,   1 stream:     p50 {ms(single, 0.5):6.2f} ms   "
          f"p99 {ms(single, 0.99):6.2f} ms   ({len(single)} events)")
    print(f"commit to event,  {args.streams:2d} streams:    p50 {ms(delays, 0.5):6.2f} ms   "
          f"p99 {ms(delays, 0.99):6.2f} ms   ({len(delays)} events)")
    print(f"commit to event,  {args.streams:2d} streams, a decision every 100 ms: "
          f"p50 {ms(paced, 0.5):6.2f} ms   p99 {ms(paced, 0.99):6.2f} ms   "
          f"({len(paced)} events)")
    print(f"ratio decision latency with/without streams: {ratio:.2f} "
          f"(median of round p50s; target <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'})")
    print(f"ratio decision latency p99 with/without:      {pct(busy, 0.99) / pct(quiet, 0.99):.2f}")
    cpu_quiet, cpu_busy = statistics.median(quiet_cpu), statistics.median(busy_cpu)
    print(f"service CPU per decision: {cpu_quiet * 1e6:.0f} us without, {cpu_busy * 1e6:.0f} us "
          f"with the streams; ratio {cpu_busy / cpu_quiet:.2f} (the cost, apart from the "
          "machine's other load)")
    print(f"the {args.streams} stream clients' own CPU per decision: "
          f"{statistics.median(reader_cpu) * 1e6:.0f} us (their process runs niced: browsers "
          "read on other machines)")
    print(f"ratio commit to event p50, {args.streams} streams / 1 stream: "
          f"{statistics.median(delays) / statistics.median(single):.2f}")
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
