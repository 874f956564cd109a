"""Cold start and resident memory of ``passbridge serve``, against a bare aiohttp app.

Each round starts, in alternating order, on this machine:

- ``passbridge serve`` on the example site (examples/site.yaml) with a new,
  empty database in a temporary folder (a first start: it creates the
  database, the reader key and the device keys), no radio flags and no
  ``--simulate`` (so no simulated radio);
- ``passbridge serve`` again on that same database (a restart);
- a bare aiohttp app answering ``/healthz`` on the same event loop
  (uvloop where installed), started by this file with nothing else imported.

Cold start is the time from starting the interpreter until ``/healthz``
answers over HTTP; resident memory is VmRSS from /proc a moment after.
Medians over the rounds; the ratios are to the bare app of the same rounds.
Then the import of the service modules is timed in fresh interpreters
(against ``import aiohttp.web``), and the modules ``serve`` has loaded are
listed by kind, to show what a lean start would drop. Targets (issue 9):
cold start <= 3x, memory <= 2.5x. Linux only (/proc).

    .venv/bin/python scripts/bench_start.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SITE = PROJECT / "examples" / "site.yaml"
START_TIMEOUT = 60.0
SETTLE = 0.5
START_TARGET = 3.0
RSS_TARGET = 2.5
# What ``serve`` imports before it answers: the service and the site loader.
SERVICE_MODULES = ("passbridge.cli.serve, passbridge.service.app, "
                   "passbridge.service.runtime, passbridge.site_file")
# Modules a lean ``serve`` with real radios should not need (issue 9 item 4).
NOT_NEEDED = ("passbridge.sim", "passbridge.scenario", "bumble", "nfc.clf.udp",
              "aiohttp.test_utils", "hypothesis", "pytest")


def bare_main(port: int) -> None:
    """The baseline: aiohttp's smallest useful server, on serve's event loop."""
    import asyncio

    from aiohttp import web

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def run() -> None:
        app = web.Application()
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    try:
        import uvloop
    except ImportError:
        asyncio.run(run())
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def healthz_status(port: int) -> int | None:
    """The HTTP status of GET /healthz, or None while nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(cmd: list[str], port: int, cwd: Path) -> tuple[float, int, int]:
    """Seconds until /healthz answers, its status, and RSS (KiB) a moment later."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            status = healthz_status(port)
            if status is not None:
                elapsed = time.perf_counter() - started
                break
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {err.strip()}")
            if time.perf_counter() - started > START_TIMEOUT:
                raise SystemExit(f"{' '.join(cmd)}: /healthz did not answer in {START_TIMEOUT} s")
            time.sleep(0.005)
        time.sleep(SETTLE)
        return elapsed, status, rss_kib(proc.pid)
    finally:
        stop(proc)


def serve_cmd(db: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "passbridge", "serve", "--site", str(SITE), "--db", str(db),
            "--host", "127.0.0.1", "--port", str(port)]


def import_seconds(statement: str, runs: int) -> float:
    """Median wall time of a fresh interpreter running ``statement``."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True, cwd=PROJECT)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _importtime(statement: str) -> list[tuple[str, int]]:
    """(module, self-time us) for each import ``-X importtime`` reports."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", statement],
                          capture_output=True, text=True, check=True, cwd=PROJECT)
    rows = []
    for line in done.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if line.startswith("import time:") and len(fields) == 3 and fields[0].strip().isdigit():
            rows.append((fields[2].strip(), int(fields[0])))
    return rows


def importtime_by_package(statement: str, count: int) -> list[tuple[int, str]]:
    """Import self-time summed per top-level package (us), largest first; the
    modules a bare interpreter loads at start-up are left out."""
    startup = {name for name, _ in _importtime("pass")}
    totals: dict[str, int] = {}
    for name, self_us in _importtime(statement):
        if name not in startup:
            top = name.split(".")[0]
            totals[top] = totals.get(top, 0) + self_us
    return sorted(((us, name) for name, us in totals.items()), reverse=True)[:count]


def loaded_by_serve(tmp: Path) -> list[str]:
    """``sys.modules`` of a ``serve`` that started and was stopped (not timed)."""
    out = tmp / "modules.txt"
    port = free_port()
    wrapper = (
        "import atexit, runpy, sys\n"
        f"atexit.register(lambda: open({str(out)!r}, 'w').write('\\n'.join(sorted(sys.modules))))\n"
        f"sys.argv = {['passbridge', *serve_cmd(tmp / 'modules.sqlite3', port)[3:]]!r}\n"
        "runpy.run_module('passbridge', run_name='__main__')\n"
    )
    measure([sys.executable, "-c", wrapper], port, tmp)
    return out.read_text().split() if out.exists() else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--import-runs", type=int, default=5)
    parser.add_argument("--bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare is not None:
        bare_main(args.bare)
        return 0

    results: dict[str, list[tuple[float, int, int]]] = {"bare": [], "first": [], "restart": []}
    with tempfile.TemporaryDirectory(prefix="pb-bench-start-") as tmp_name:
        tmp = Path(tmp_name)
        for r in range(args.rounds):
            db = tmp / f"round-{r}" / "passbridge.sqlite3"
            runs = [("first", serve_cmd), ("restart", serve_cmd),
                    ("bare", lambda _db, port: [sys.executable, __file__, "--bare", str(port)])]
            # Alternate: the bare app first in odd rounds, so a slow moment of
            # the shared machine does not always fall on the same side.
            order = runs if r % 2 == 0 else [runs[2], runs[0], runs[1]]
            for name, make in order:
                port = free_port()
                results[name].append(measure(make(db, port), port, tmp))
            shutil.rmtree(db.parent)
        modules = loaded_by_serve(tmp)

    def med(name: str, index: int) -> float:
        return statistics.median(float(m[index]) for m in results[name])

    def ratio(name: str, index: int) -> float:
        return statistics.median(
            float(a[index]) / float(b[index])
            for a, b in zip(results[name], results["bare"], strict=True))

    statuses = {name: sorted({m[1] for m in ms}) for name, ms in results.items()}
    print(f"{args.rounds} alternating rounds, medians; {os.cpu_count()} CPUs; "
          f"serve: examples/site.yaml, new temporary database, no radios, no --simulate")
    print(f"{'':26}{'cold start':>12}{'ratio':>8}{'RSS':>12}{'ratio':>8}  /healthz")
    for name, label in (("bare", "bare aiohttp app"), ("first", "serve, first start"),
                        ("restart", "serve, restart")):
        start_ratio = "" if name == "bare" else f"{ratio(name, 0):7.2f}x"
        rss_ratio = "" if name == "bare" else f"{ratio(name, 2):7.2f}x"
        print(f"{label:26}{med(name, 0) * 1e3:9.0f} ms{start_ratio:>8}"
              f"{med(name, 2) / 1024:8.1f} MiB{rss_ratio:>8}  {statuses[name]}")
    for name in ("first", "restart"):
        ok = ratio(name, 0) <= START_TARGET and ratio(name, 2) <= RSS_TARGET
        print(f"targets (start <= {START_TARGET:g}x, RSS <= {RSS_TARGET:g}x), {name}: "
              f"{'met' if ok else 'NOT met'}")

    empty = import_seconds("pass", args.import_runs)
    aiohttp_web = import_seconds("import aiohttp.web", args.import_runs) - empty
    service = import_seconds(f"import {SERVICE_MODULES}", args.import_runs) - empty
    print(f"import of {SERVICE_MODULES} in a fresh interpreter: {service * 1e3:.0f} ms "
          f"({service / aiohttp_web:.1f}x `import aiohttp.web`, {aiohttp_web * 1e3:.0f} ms; "
          f"interpreter start {empty * 1e3:.0f} ms not counted)")
    print("where that import time goes (python -X importtime, self time per package):")
    for us, name in importtime_by_package(f"import {SERVICE_MODULES}", 12):
        print(f"  {us / 1e3:8.1f} ms  {name}")
    present = [prefix for prefix in NOT_NEEDED
               if any(m == prefix or m.startswith(prefix + ".") for m in modules)]
    print(f"modules loaded by serve: {len(modules)}; of those a serve with real radios should "
          f"not need: {', '.join(present) if present else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
