"""Real-radio placements of serve: an nfcpy reader loop and a Bluetooth approach loop.

No radio hardware here, so the devices are nfcpy's udp driver (the reader
code is the same as for a USB reader) and bleak over the bumble backend.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from pathlib import Path

import yaml

from passbridge.adapters.keystore import MemoryKeyStore
from passbridge.clock import SystemClock
from passbridge.core.model import Side
from passbridge.core.tokens import load_private_key_pem
from passbridge.protocol.aliro_crypto import Interface
from passbridge.protocol.aliro_phone import PhoneApplet
from passbridge.service.hardware import BleDoorRadio, Placement
from passbridge.service.runtime import memory_services
from passbridge.sim.ble_phone import SimulatedBlePhone
from passbridge.sim.bleak_bumble import BumbleAir
from passbridge.sim.nfc_card import SimulatedCard, bind_loopback_udp
from passbridge.sim.phone import SimulatedPhone
from passbridge.site_file import parse_site
from tests.process.test_service_process import PASSBRIDGE, READY

SITE = {
    "site": {"id": "hq", "timezone": "UTC"},
    "doors": [{"id": "front", "reader": True, "keypad": True, "ble_rssi_min": -60}],
    "users": [
        {
            "id": "alice",
            "cards": ["10001"],
            "pin": "2468",
            "phones": ["alice-phone"],
            "doors": "all",
        }
    ],
}


def free_udp_port() -> int:
    """A free loopback UDP port for a card in another process, one nfcpy can use."""
    with bind_loopback_udp(0) as probe:
        return int(probe.getsockname()[1])


def cli(*args: str, cwd: Path) -> str:
    done = subprocess.run([*PASSBRIDGE, *args], capture_output=True, text=True, cwd=cwd, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_serve_with_a_named_nfc_reader_decides_taps(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(SITE))
    db = tmp_path / "data" / "pb.sqlite3"
    cli(
        "phone",
        "enroll",
        "--db",
        str(db),
        "--phone",
        "alice-phone",
        "--user",
        "alice",
        "--new-key-out",
        str(tmp_path / "alice-phone.pem"),
        cwd=tmp_path,
    )
    reader_key = bytes.fromhex(cli("keys", "reader-public", "--db", str(db), cwd=tmp_path).strip())
    phone_key = load_private_key_pem((tmp_path / "alice-phone.pem").read_text(), "ES256")
    applet = PhoneApplet(phone_key, reader_key)  # type: ignore[arg-type]
    port = free_udp_port()
    server = subprocess.Popen(
        [
            *PASSBRIDGE,
            "serve",
            "--site",
            "site.yaml",
            "--db",
            str(db),
            "--port",
            "0",
            "--nfc",
            f"udp:127.0.0.1:{port}=front",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if READY.search(line):
                break
        with SimulatedCard(applet.process, port=port):
            deadline = time.monotonic() + 20
            while applet.last_door_status is None and time.monotonic() < deadline:
                time.sleep(0.02)
        assert applet.last_door_status is True
    finally:
        server.terminate()
        server.communicate(timeout=20)
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT factor, result, reason, user, credential FROM events WHERE kind='decision'"
        ).fetchall()
    assert rows[0] == ("nfc", "granted", "access_granted", "alice", "alice-phone")


async def test_bluetooth_radio_unlocks_an_approaching_phone_once() -> None:
    clock = SystemClock()
    keystore = MemoryKeyStore(clock=clock)
    site = parse_site(SITE, file="site.yaml", pin_key=keystore.pin_key())
    services = memory_services(site, clock=clock, keystore=keystore)
    phone = SimulatedPhone.create("alice-phone")
    keystore.enroll_phone("alice-phone", "alice", phone.public_key_point)
    air = BumbleAir()
    applet = phone.applet(keystore.reader_key().public_key, interface=Interface.BLE)
    ble_phone = SimulatedBlePhone(air, applet.process, rssi=-75)  # too far for this door
    radio = BleDoorRadio(
        services,
        Placement("hci0", "front", Side.IN),
        scanner_backend=air.scanner_backend,
        client_backend=air.client_backend,
    )
    await ble_phone.start()
    await radio.start()
    try:
        await asyncio.sleep(0.6)
        assert await services.audit.store.page(0, 10) == []  # not close enough: no attempt
        ble_phone.rssi = -50  # walks up to the door
        events: list[dict[str, object]] = []
        for _ in range(200):
            events = await services.audit.store.page(0, 10)
            if events:
                break
            await asyncio.sleep(0.025)
        await asyncio.sleep(0.6)  # lingering at the door
        events = await services.audit.store.page(0, 10)
        assert [(e["factor"], e["reason"], e["user"]) for e in events] == [
            ("ble", "access_granted", "alice")
        ]
    finally:
        await radio.stop()
        await ble_phone.close()
        await air.close()
