"""Wired OSDP readers: card-to-LED time in poll intervals, and the panel's CPU per reader.

With 8 and with 32 simulated readers on one bus (one pty, addresses 0..N-1,
secure channel on), this process runs the service's real Control Panel
(service.osdp.OsdpBus over adapters.osdp_panel, libosdp 3.2.9) in front of
the core and a durable SQLite audit log; a child process runs the readers
(libosdp PDs, sim.osdp_reader), so this process's CPU time is the panel's.

Per round, the child presents a card at one reader (it opens that reader's
door) and times, on its own clock, the card read until that reader receives
the LED command back. Rounds alternate between two panels on the same bus:

- ``decision``: the service as ``serve --osdp`` runs it: card bits decoded,
  the core's decision, its audit record committed, the feedback mapping;
- ``echo`` (the baseline): the panel answers every card read with an LED
  command at once, in its event callback (no decoding, decision or audit).

The unit is one OSDP poll interval measured in the same run: the child
counts the panel's frames to each address on the bus while the bus is idle.
Target (issue 10): the decision adds at most one poll interval (decision
median - echo median <= 1). CPU: this process's CPU time over wall time,
per reader, idle (polling only) and during the card rounds.

    .venv/bin/python scripts/bench_osdp.py [--readers 8 32] [--rounds 30]

A pty does not pace bytes at the baud rate; on a real RS-485 bus at 9600
baud each frame takes about 1 ms a byte, so the poll interval grows with the
readers and the ratios, not the milliseconds, carry over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from passbridge.adapters.keystore import MemoryKeyStore  # noqa: E402
from passbridge.adapters.osdp_panel import CardData, PanelEvent  # noqa: E402
from passbridge.bridge.reader_feedback import LedColor, LedCommand  # noqa: E402
from passbridge.clock import SystemClock  # noqa: E402
from passbridge.core.model import Side  # noqa: E402
from passbridge.service.osdp import OsdpBus, OsdpPlacement  # noqa: E402
from passbridge.service.runtime import Services, audited_services  # noqa: E402
from passbridge.site_file import parse_site  # noqa: E402

CARD = 10001
IDLE_SECONDS = 3.0
ONLINE_SECONDS = 120.0
ANSWER_SECONDS = 10.0
TARGET_ADDED_POLLS = 1.0
ECHO_LED = LedCommand(LedColor.GREEN, on_ms=100, off_ms=0, duration_ms=1000)


# --- the child: N simulated readers on one pty bus --------------------------------------

def _frames_per_address(data: bytes) -> dict[int, int]:
    """Count the panel's frames on the bus by address (SOM, address, length)."""
    counts: dict[int, int] = {}
    i = 0
    while i + 4 <= len(data):
        length = data[i + 2] | data[i + 3] << 8
        if data[i] != 0x53 or not 8 <= length <= 1024 or i + length > len(data):
            i += 1
            continue
        address = data[i + 1] & 0x7F
        counts[address] = counts.get(address, 0) + 1
        i += length
    return counts


def child(folder: Path, count: int) -> None:
    """Readers at addresses 0..count-1 with the keys read from stdin; then
    answer the parent's lines: ``idle S`` and ``card ADDRESS``."""
    from passbridge.sim.osdp_reader import SimulatedBus, SimulatedReader

    keys = [bytes.fromhex(k) for k in json.loads(sys.stdin.readline())]
    bus = SimulatedBus(folder, "bus")
    readers = [SimulatedReader(bus, address, keys[address]) for address in range(count)]
    monitor = bus.channel()
    for reader in readers:
        reader.start()
    print(json.dumps({"bus": str(bus.path)}), flush=True)
    try:
        for line in sys.stdin:
            verb, _, argument = line.strip().partition(" ")
            if verb == "idle":
                monitor.read(1 << 30)
                started = time.monotonic()
                time.sleep(float(argument))
                seconds = time.monotonic() - started
                counts = _frames_per_address(monitor.read(1 << 30))
                intervals = [seconds / counts[a] for a in range(count) if counts.get(a)]
                print(json.dumps({"poll": statistics.median(intervals) if intervals else None,
                                  "polled": len(intervals)}), flush=True)
            elif verb == "card":
                reader = readers[int(argument)]
                mark = len(reader.commands)
                presented = time.monotonic()
                reader.present_card(CARD)
                led = reader.wait_for(lambda c: c.kind == "led", after=mark,
                                      timeout=ANSWER_SECONDS)
                print(json.dumps({"seconds": led.at - presented}), flush=True)
            elif verb == "quit":
                break
    finally:
        for reader in readers:
            reader.stop()
        bus.close()


# --- the parent: the service's panel ------------------------------------------------------

def site_text(count: int) -> str:
    doors = "\n".join(f"  - {{id: d{i}, reader: true}}" for i in range(count))
    return (f"site: {{id: bench, timezone: UTC}}\ndoors:\n{doors}\n"
            f"users:\n  - {{id: alice, cards: [\"{CARD}\"], doors: all}}\n")


class Child:
    """The reader process, spoken to in lines of JSON."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, folder: Path, count: int, keys: list[bytes]) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--child", str(folder), str(count),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        child = cls(process)
        child.send(json.dumps([k.hex() for k in keys]))
        return child

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")

    async def answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), ONLINE_SECONDS)
        if not line:
            raise RuntimeError("the reader process ended")
        result: dict[str, Any] = json.loads(line)
        return result

    async def ask(self, line: str) -> dict[str, Any]:
        self.send(line)
        return await self.answer()

    async def close(self) -> None:
        self.send("quit")
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def cpu_share(cpu: float, wall: float, readers: int) -> float:
    """This process's CPU over wall time, per reader (1.0 = one core)."""
    return cpu / wall / readers


async def run(count: int, rounds: int, folder: Path) -> dict[str, Any]:
    keystore = MemoryKeyStore()
    site = parse_site(yaml.safe_load(site_text(count)), file="bench.yaml",
                      pin_key=keystore.pin_key())
    keys = [secrets.token_bytes(16) for _ in range(count)]
    for i, key in enumerate(keys):
        keystore.set_osdp_key(f"d{i}", Side.IN, key)
    services: Services = audited_services(site, clock=SystemClock(), keystore=keystore,
                                          audit_path=folder / "audit.sqlite3")
    child = await Child.start(folder, count, keys)
    bus: OsdpBus | None = None
    try:
        path = (await child.answer())["bus"]
        bus = OsdpBus(services, [OsdpPlacement(path, i, f"d{i}", Side.IN)
                                 for i in range(count)])
        await bus.start()
        deadline = time.monotonic() + ONLINE_SECONDS
        while sum(s.online for s in bus.status()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{sum(s.online for s in bus.status())} of {count} "
                                   "readers online")
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # let the start-up traffic settle

        wall, cpu = time.perf_counter(), time.process_time()
        idle = await child.ask(f"idle {IDLE_SECONDS}")
        idle_share = cpu_share(time.process_time() - cpu, time.perf_counter() - wall, count)
        poll = idle["poll"]
        if not poll or idle["polled"] < count:
            raise RuntimeError(f"poll interval not measured: {idle}")

        panel = bus.panel
        decide = panel._on_event

        def echo(event: PanelEvent) -> None:
            if isinstance(event, CardData):
                panel.submit_led(event.address, ECHO_LED)

        rng = random.Random(count)
        times: dict[str, list[float]] = {"decision": [], "echo": []}
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(rounds):
            for mode in (("decision", "echo") if i % 2 else ("echo", "decision")):
                panel._on_event = decide if mode == "decision" else echo
                address = rng.randrange(count)
                times[mode].append((await child.ask(f"card {address}"))["seconds"])
                # The buzzer command after the LED and a random phase against the polls.
                await asyncio.sleep(2 * poll + rng.uniform(0, poll))
        busy_share = cpu_share(time.process_time() - cpu, time.perf_counter() - wall, count)
        panel._on_event = decide
        decision, echo_median = (statistics.median(times["decision"]),
                                 statistics.median(times["echo"]))
        return {
            "readers": count, "poll_ms": poll * 1000,
            "decision_polls": decision / poll, "echo_polls": echo_median / poll,
            "decision_p90_polls": statistics.quantiles(times["decision"], n=10)[-1] / poll,
            "added_polls": (decision - echo_median) / poll,
            "cpu_idle_per_reader": idle_share, "cpu_busy_per_reader": busy_share,
        }
    finally:
        if bus is not None:
            await bus.stop()
        await child.close()
        await services.audit.store.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        child(Path(args[1]), int(args[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rounds", type=int, default=30,
                        help="card reads per panel (decision and echo), alternating")
    options = parser.parse_args(args)
    results = []
    for count in options.readers:
        with tempfile.TemporaryDirectory(prefix="bench-osdp-") as folder:
            results.append(asyncio.run(run(count, options.rounds, Path(folder))))
    print("Card read at the reader -> LED command back at the reader, in poll intervals "
          "(medians; the poll interval measured on the same bus while idle)")
    print(f"{'readers':>7} | {'decision':>8} | {'p90':>5} | {'echo':>5} | {'added':>5} | "
          f"{'target':>6} | CP CPU per reader, idle / during cards")
    for r in results:
        verdict = "met" if r["added_polls"] <= TARGET_ADDED_POLLS else "MISSED"
        print(f"{r['readers']:>7} | {r['decision_polls']:>8.2f} | "
              f"{r['decision_p90_polls']:>5.2f} | {r['echo_polls']:>5.2f} | "
              f"{r['added_polls']:>5.2f} | <= {TARGET_ADDED_POLLS:g} {verdict} | "
              f"{r['cpu_idle_per_reader']:.2%} / {r['cpu_busy_per_reader']:.2%} of a core")
    print("poll interval (the unit): "
          + ", ".join(f"{r['readers']} readers {r['poll_ms']:.1f} ms" for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
