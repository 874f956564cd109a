"""``passbridge osdp install``: a new reader takes its key from the install key
once, the key is proved and kept sealed; a second install is refused unless
``--again``; a reader that already has a key refuses the install key.

The reader is a libosdp PD in install mode on a pty (sim/osdp_reader.py); the
command opens the pty by path like a serial device.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from passbridge.adapters.keystore import SqliteKeyStore
from passbridge.cli import main
from passbridge.core.model import Side
from passbridge.sim.osdp_reader import SimulatedBus, SimulatedReader


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[SimulatedBus]:
    bus = SimulatedBus(tmp_path, "ttyOSDP")
    yield bus
    bus.close()


@pytest.fixture
def fresh_reader(bus: SimulatedBus) -> Iterator[SimulatedReader]:
    reader = SimulatedReader(bus, 5, None)  # fresh from the factory: install mode
    reader.start()
    yield reader
    reader.stop()


async def install(bus: SimulatedBus, db: Path, *extra: str) -> int:
    argv = ["osdp", "install", "--port", str(bus.path), "--address", "5", "--door",
            "front:out", "--db", str(db), "--timeout", "15", *extra]
    return await asyncio.to_thread(main, argv)


@pytest.mark.slow  # real time on the OSDP link (seconds)
async def test_install_once_then_refused_unless_again(
    bus: SimulatedBus, fresh_reader: SimulatedReader, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "data" / "pb.sqlite3"
    assert await install(bus, db) == 0
    out = capsys.readouterr().out
    assert "installed" in out and "--osdp" in out
    with SqliteKeyStore(db) as store:
        key = store.osdp_key("front", Side.OUT)
    assert key is not None and fresh_reader.scbk == key.scbk  # the reader took that key
    assert key.scbk.hex() not in out  # never printed
    assert fresh_reader.received("keyset")

    # Once: a second install for that door side is refused, nothing changes.
    assert await install(bus, db) == 2
    assert "--again" in capsys.readouterr().err
    # Asked again, but the reader has its key now and refuses the install key.
    assert await install(bus, db, "--again", "--timeout", "5") == 1
    assert "install mode" in capsys.readouterr().err
    with SqliteKeyStore(db) as store:
        assert store.osdp_key("front", Side.OUT) == key

    assert main(["osdp", "list", "--db", str(db)]) == 0
    assert "door=front  side=out" in capsys.readouterr().out


async def test_a_missing_port_is_one_clear_line(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(main, [
        "osdp", "install", "--port", str(tmp_path / "ttyNONE"), "--address", "1", "--door",
        "front", "--db", str(tmp_path / "pb.sqlite3")])
    assert code == 1
    assert "ttyNONE" in capsys.readouterr().err
