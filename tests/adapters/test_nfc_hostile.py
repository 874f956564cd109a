"""Hostile cards at a production NFC reader (issue 14, items 1-3).

Everything runs over nfcpy's real reader stack and its udp driver against
the simulated card (passbridge/sim/nfc_card.py); several cards "in the
field" take turns, one per activation (the sim has no anticollision).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import subprocess
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from passbridge.adapters.keystore import MemoryKeyStore
from passbridge.adapters.nfc_reader import Decide, Exchange, FieldHeld, NfcReader
from passbridge.bridge.flood import FloodSettings
from passbridge.clock import SystemClock
from passbridge.core.model import Side
from passbridge.core.tokens import load_private_key_pem
from passbridge.protocol.aliro_messages import INS_CONTROL_FLOW, INS_EXCHANGE
from passbridge.protocol.aliro_phone import PhoneApplet
from passbridge.service.hardware import NfcDoorReader, NfcSettings, Placement
from passbridge.service.runtime import Services, memory_services
from passbridge.sim.nfc_card import CardFaults, SimulatedCard
from passbridge.sim.phone import SimulatedPhone
from passbridge.site_file import parse_site
from tests.process.test_service_hardware import SITE, cli, free_udp_port
from tests.process.test_service_process import PASSBRIDGE, READY
from tests.service_support import metric_sample

SERVED_WITHIN = 2.0  # the bound: a phone is served within 2 s of a hostile arrival
WAIT = 20.0  # generous bound on things that must happen eventually
COMMANDS = (b"\x00\xa4\x04\x00\x02\xa0\x01", b"\x80\x10\x00\x00\x01\x55", b"\x80\x20\x00\x00")


def echo(command: bytes) -> bytes:
    return command[::-1] + b"\x90\x00"


class Script:
    def run(self, exchange: Exchange, decide: Decide) -> int:
        for command in COMMANDS:
            exchange(command)
        return len(COMMANDS)


class Counting:
    """An applet wrapper counting the taps it saw begin (each starts with
    SELECT) and the ones that reached their last command: the door status
    (EXCHANGE, sent only once the door decided) or the closing CONTROL FLOW
    of a tap that failed authentication.

    ``leave_after_tap(leave)`` makes the card leave the field right after
    its next last command, so it never leaves half way through a tap (a
    departure at a random moment could cut a tap after its activation and
    before its SELECT, which nothing here could count).
    """

    def __init__(self, applet: Callable[[bytes], bytes]) -> None:
        self.applet = applet
        self.taps = 0
        self.decided = 0  # EXCHANGE received: the door's decision was made and audited
        self._leave: Callable[[], None] | None = None
        self.left = threading.Event()

    def leave_after_tap(self, leave: Callable[[], None]) -> None:
        self._leave = leave

    def __call__(self, command: bytes) -> bytes:
        if command[:2] == b"\x00\xa4":
            self.taps += 1
        answer = self.applet(command)
        if command[1:2] == bytes([INS_EXCHANGE]):
            self.decided += 1
        if command[1:2] in (bytes([INS_EXCHANGE]), bytes([INS_CONTROL_FLOW])):
            leave, self._leave = self._leave, None
            if leave is not None:
                leave()
                self.left.set()
        return answer


async def served(check: Callable[[], bool], within: float) -> float:
    """Seconds until ``check()`` holds; fails the test past ``within``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, f"not served within {within}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


# -- item 1 on the adapter: a silent max-FWI card, a card holding the field -----------


async def test_silent_card_with_the_longest_fwi_costs_a_short_presence_check() -> None:
    """A card whose ATS asks FWI 14 (4.9 s frames) goes silent after its tap;
    nfcpy's presence check used to wait the whole FWT before the next card."""
    phone_taps = Counting(echo)
    with SimulatedCard(echo, fwi=14, faults=CardFaults(mute_after=len(COMMANDS))) as card:
        arrived = time.monotonic()
        card.join_field(phone_taps)  # a phone comes up while the silent card is there
        async with NfcReader(card.device, Script, field_hold=30.0):
            await served(lambda: phone_taps.taps >= 1, SERVED_WITHIN)
    assert time.monotonic() - arrived < WAIT


@pytest.mark.slow
async def test_card_holding_the_field_is_released_and_reported() -> None:
    held: list[FieldHeld] = []

    async def on_held(event: FieldHeld) -> None:
        held.append(event)

    phone_taps = Counting(echo)
    with SimulatedCard(echo, faults=CardFaults(hold=True)) as card:
        async with NfcReader(card.device, Script, field_hold=1.0, on_field_held=on_held):
            while card.activations < 1:
                await asyncio.sleep(0.005)
            card.join_field(phone_taps)  # the hostile card stays; a phone arrives
            await served(lambda: phone_taps.taps >= 1, SERVED_WITHIN)
    assert held and held[0].seconds >= 1.0


# -- items 1-3 on the production reader (NfcDoorReader) --------------------------------


@dataclass
class Door:
    services: Services
    phone: SimulatedPhone
    keystore: MemoryKeyStore

    def applet(self, phone: SimulatedPhone | None = None) -> PhoneApplet:
        return (phone or self.phone).applet(self.keystore.reader_key().public_key)

    async def events(self) -> list[dict[str, Any]]:
        return await self.services.audit.store.page(0, 100_000)


@pytest.fixture
async def door() -> AsyncIterator[Door]:
    clock = SystemClock()
    keystore = MemoryKeyStore(clock=clock)
    site = parse_site(SITE, file="site.yaml", pin_key=keystore.pin_key())
    services = memory_services(site, clock=clock, keystore=keystore)
    phone = SimulatedPhone.create("alice-phone")
    keystore.enroll_phone("alice-phone", "alice", phone.public_key_point)
    yield Door(services, phone, keystore)


def nfc_reader(door: Door, card: SimulatedCard, **settings: Any) -> NfcDoorReader:
    return NfcDoorReader(door.services, Placement(card.device, "front", Side.IN),
                         NfcSettings(**settings))


def decisions(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["reason"], e["credential"] or "") for e in events if e["kind"] == "decision"]


async def test_flood_of_failed_taps_is_one_denial_and_a_summary(door: Door) -> None:
    """A card failing authentication at every activation, with an enrolled
    phone taking turns in the same field: one audited denial for the burst,
    a device summary counting the rest, and every phone tap decided.

    Both cards leave between two of their taps, so every tap is counted on
    both sides. A phone tap that fails (its answer too late for the reader
    on a loaded machine) is an unauthenticated failure like the stranger's
    and is counted with them; a phone that authenticated is always decided.
    """
    stranger = Counting(SimulatedPhone.create("stranger").applet(
        door.keystore.reader_key().public_key).process)
    phone = Counting(door.applet().process)
    flood = FloodSettings(auth_rate=1000.0, auth_burst=1000)
    with SimulatedCard(stranger, faults=CardFaults(bounce=True)) as card:
        reader = nfc_reader(door, card, flood=flood)
        await reader.start()
        try:
            card.join_field(phone, CardFaults(bounce=True))
            await served(lambda: phone.decided >= 6 and stranger.taps >= 12, WAIT)
            stranger.leave_after_tap(card.leave_field)  # the stranger goes
            await served(stranger.left.is_set, WAIT)
            decided_before = phone.decided  # the phone keeps tapping
            await served(lambda: phone.decided >= decided_before + 2, WAIT)
            phone.leave_after_tap(lambda: card.leave_field(phone))
            await served(lambda: phone.left.is_set() and not card.in_session, WAIT)
        finally:
            await reader.stop()
    events = await door.events()
    found = decisions(events)
    assert found.count(("unknown_credential", "")) == 1
    # Every phone tap that reached a decision is audited, none summarised away.
    assert found.count(("access_granted", "alice-phone")) == phone.decided
    failed = stranger.taps + (phone.taps - phone.decided)
    summaries = [e["payload"] for e in events if e["kind"] == "device"]
    assert summaries and all(s["event"] == "nfc_auth_failed_summary" for s in summaries)
    assert sum(s["suppressed"] for s in summaries) == failed - 1
    assert summaries[-1]["door"] == "front" and summaries[-1]["radio"] == "nfc"
    assert metric_sample(door.services.metrics.render(), "passbridge_radio_events_total",
                         radio="nfc", door="front", side="in",
                         event="nfc_auth_failed_summarised") == failed - 1


@pytest.mark.slow
async def test_failed_authentications_are_paced_per_reader(door: Door) -> None:
    """The token bucket: past the burst, a reader takes failed authentications
    at the configured rate (an upper bound on attempts, not a timing bound)."""
    stranger = Counting(SimulatedPhone.create("stranger").applet(
        door.keystore.reader_key().public_key).process)
    flood = FloodSettings(auth_rate=4.0, auth_burst=3)
    with SimulatedCard(stranger, faults=CardFaults(bounce=True)) as card:
        reader = nfc_reader(door, card, flood=flood)
        started = time.monotonic()
        await reader.start()
        try:
            await asyncio.sleep(2.0)
        finally:
            await reader.stop()
        elapsed = time.monotonic() - started
    assert stranger.taps >= 3
    assert stranger.taps <= 3 + 4.0 * elapsed + 1
    assert "event=\"auth_paced\"" in door.services.metrics.render()


@pytest.mark.slow
async def test_phone_lingering_at_the_reader_is_one_decision(door: Door) -> None:
    """The short field hold is for cards that did not authenticate: a phone
    left at the reader for 2 s after its tap is one tap, not one per second."""
    with SimulatedCard(door.applet().process) as card:
        reader = nfc_reader(door, card)
        await reader.start()
        try:
            await asyncio.sleep(2.0)  # the phone stays in the field
        finally:
            await reader.stop()
        assert card.activations == 1
    assert decisions(await door.events()) == [("access_granted", "alice-phone")]


@pytest.mark.parametrize(
    "faults",
    [CardFaults(drop_after=1), CardFaults(drop_after=2, drop_mode="silent")],
    ids=["leaves-the-field", "times-out"],
)
async def test_tap_ending_before_a_decision_is_audited_on_the_real_reader(
    door: Door, faults: CardFaults
) -> None:
    """docs/decisions.md: a tap that ends before anything is decided is an
    audited denial, on the production reader as on the simulated path."""
    with SimulatedCard(door.applet().process, faults=faults) as card:
        reader = nfc_reader(door, card)
        await reader.start()
        try:
            for _ in range(int(WAIT / 0.02)):
                if decisions(await door.events()):
                    break
                await asyncio.sleep(0.02)
        finally:
            await reader.stop()
    events = await door.events()
    first = next(e for e in events if e["kind"] == "decision")
    assert (first["result"], first["reason"]) == ("denied", "unknown_credential")
    assert "NFC tap failed" in first["detail"]



# -- item 1 at process level: serve --nfc udp:... with a card holding the field ---------


@dataclass
class Served:
    base: str
    port: int
    db: Path
    reader_key: bytes
    phone: PhoneApplet
    output: list[str]


@contextlib.contextmanager
def serving(tmp_path: Path) -> Iterator[Served]:
    """``passbridge serve --nfc udp:127.0.0.1:PORT=front`` with alice's phone
    enrolled; its output is drained (and kept) while it runs."""
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(SITE))
    db = tmp_path / "data" / "pb.sqlite3"
    cli("phone", "enroll", "--db", str(db), "--phone", "alice-phone", "--user", "alice",
        "--new-key-out", str(tmp_path / "alice-phone.pem"), cwd=tmp_path)
    reader_key = bytes.fromhex(cli("keys", "reader-public", "--db", str(db), cwd=tmp_path).strip())
    phone_key = load_private_key_pem((tmp_path / "alice-phone.pem").read_text(), "ES256")
    phone = PhoneApplet(phone_key, reader_key)  # type: ignore[arg-type]
    port = free_udp_port()
    server = subprocess.Popen(
        [*PASSBRIDGE, "serve", "--site", "site.yaml", "--db", str(db), "--port", "0",
         "--nfc", f"udp:127.0.0.1:{port}=front"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )
    output: list[str] = []
    try:
        assert server.stdout is not None
        base = ""
        for line in server.stdout:
            output.append(line)
            found = READY.search(line)
            if found:
                base = f"http://{found.group(1)}:{found.group(2)}"
                break
        assert base, f"serve did not start: {''.join(output)}"
        drain = threading.Thread(target=lambda: output.extend(server.stdout or ()), daemon=True)
        drain.start()
        yield Served(base, port, db, reader_key, phone, output)
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.mark.slow
def test_serve_releases_a_held_field_and_serves_the_phone(tmp_path: Path) -> None:
    """``serve --nfc udp:...`` with the default field hold: a hostile card
    arrives and holds the field; a phone in the field with it is served within
    2 s of the hostile arrival, and the held field shows in /healthz, /metrics
    and the audit log."""
    with serving(tmp_path) as served:
        phone = served.phone
        stranger = SimulatedPhone.create("stranger").applet(served.reader_key)
        seen: dict[str, float] = {}  # when, in the cards' own thread

        def hostile(command: bytes) -> bytes:
            seen.setdefault("arrived", time.monotonic())  # its first SELECT
            return stranger.process(command)

        def legitimate(command: bytes) -> bytes:
            answer = phone.process(command)
            if command[1:2] == bytes([INS_EXCHANGE]):
                seen.setdefault("served", time.monotonic())  # told the door's decision
            return answer

        faults = CardFaults(hold=True)
        with SimulatedCard(hostile, port=served.port, faults=faults) as card:
            # The phone is there from the start and waits its turn: the
            # hostile card is read first (it was first in the field) and holds.
            card.join_field(legitimate)
            deadline = time.monotonic() + WAIT
            while "served" not in seen:
                assert time.monotonic() < deadline, "phone never served"
                time.sleep(0.005)
            assert phone.last_door_status is True
            health = get_json(f"{served.base}/healthz")
            metrics = get(f"{served.base}/metrics")
    # Timed between the two events themselves, not by when this thread saw them.
    assert seen["served"] - seen["arrived"] < SERVED_WITHIN, "phone not served in 2 s"
    assert health["status"] == "degraded"
    assert "held the field" in next(iter(health["degraded"].values()))
    assert 'event="nfc_field_held"' in metrics
    with sqlite3.connect(served.db) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE kind='device'").fetchall()
        denied = conn.execute("SELECT COUNT(*) FROM events WHERE kind='decision' "
                              "AND reason='unknown_credential'").fetchone()[0]
    held = [json.loads(payload) for (payload,) in rows]
    assert held[0]["event"] == "nfc_field_held" and held[0]["door"] == "front"
    assert denied == 1


@pytest.mark.slow
def test_serve_summarises_a_flood_and_audits_every_phone_tap(tmp_path: Path) -> None:
    """``serve --nfc udp:...``: a card failing authentication at every
    activation as fast as the reader polls, with alice's phone taking turns
    in the field. On disk: one audited denial, a summary counting the rest,
    and every one of alice's taps that reached the door's decision audited
    (a phone tap failing before that, too slow for the reader on a loaded
    machine, is counted with the failures). Both cards leave between two of
    their taps, so every tap is counted on both sides."""
    with serving(tmp_path) as served:
        stranger = Counting(SimulatedPhone.create("stranger").applet(served.reader_key).process)
        phone = Counting(served.phone.process)
        with SimulatedCard(stranger, port=served.port, faults=CardFaults(bounce=True)) as card:
            card.join_field(phone, CardFaults(bounce=True))
            deadline = time.monotonic() + 60

            def until(check: Callable[[], bool]) -> None:
                while not check():
                    assert time.monotonic() < deadline, (stranger.taps, phone.taps)
                    time.sleep(0.01)

            until(lambda: stranger.taps >= 20 and phone.decided >= 5)
            stranger.leave_after_tap(card.leave_field)  # the stranger goes
            until(stranger.left.is_set)
            settled = phone.decided
            until(lambda: phone.decided >= settled + 2)
            phone.leave_after_tap(lambda: card.leave_field(phone))
            until(lambda: phone.left.is_set() and not card.in_session)
            metrics = get(f"{served.base}/metrics")
    # serve has stopped: its last summary is on disk.
    assert 'event="nfc_auth_failed_summarised"' in metrics
    with sqlite3.connect(served.db) as conn:
        decided = conn.execute("SELECT reason, COUNT(*) FROM events WHERE kind='decision' "
                               "GROUP BY reason").fetchall()
        rows = conn.execute("SELECT payload FROM events WHERE kind='device'").fetchall()
    assert dict(decided) == {"unknown_credential": 1, "access_granted": phone.decided}
    summaries = [json.loads(payload) for (payload,) in rows]
    assert {s["event"] for s in summaries} == {"nfc_auth_failed_summary"}
    failed = stranger.taps + (phone.taps - phone.decided)
    assert sum(s["suppressed"] for s in summaries) == failed - 1
    assert 'event="auth_paced"' in metrics  # the default bucket: 10 back to back, then 2/s


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def get_json(url: str) -> dict[str, Any]:
    found = json.loads(get(url))
    assert isinstance(found, dict)
    return found


async def test_garbage_from_a_card_is_one_log_line_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A one-byte ATS makes nfcpy raise while activating: the reader logs the
    error type on one line (no traceback) and keeps polling."""
    caplog.set_level(logging.WARNING, logger="passbridge.adapters.nfc_reader")
    with SimulatedCard(echo, ats=b"\x01") as card:
        async with NfcReader(card.device, Script) as reader:
            while card.activations < 2:  # activated, failed, and polled again
                await asyncio.sleep(0.01)
            assert reader.running
    failed = [r for r in caplog.records if "polling failed" in r.getMessage()]
    assert failed and all(r.exc_info is None for r in failed)
    assert "IndexError" in failed[0].getMessage()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("option", "value"),
    [("--nfc-field-hold", "0"), ("--nfc-fwi-max", "15"), ("--auth-failure-burst", "0")],
)
def test_serve_refuses_bad_reader_limits_by_name(tmp_path: Path, option: str, value: str) -> None:
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(SITE))
    done = subprocess.run(
        [*PASSBRIDGE, "serve", "--site", "site.yaml", "--db", str(tmp_path / "pb.sqlite3"),
         "--port", "0", "--nfc", f"udp:127.0.0.1:{free_udp_port()}=front", option, value],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert done.returncode != 0
    assert option in done.stderr and "Traceback" not in done.stderr
