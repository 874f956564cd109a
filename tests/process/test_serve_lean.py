"""``passbridge serve`` with no ``--simulate`` loads no simulator (issue 9, lean start).

A real ``serve`` process, run through a small wrapper that writes the names
of every module it loaded when it exits: the simulators (``passbridge.sim``,
bumble, nfcpy's udp driver) cost about half of serve's import time and
memory they would never use. ``serve --simulate`` is the control: it does
load them, so the check sees what it claims to.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from tests.process import test_service_process
from tests.process.test_service_process import start_server

pytestmark = pytest.mark.slow

SIMULATORS = ("passbridge.sim", "bumble", "nfc.clf.udp")
WRAPPER = """\
import atexit, os, runpy, sys
out = os.environ["PB_MODULES_OUT"]
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
sys.argv[0] = "passbridge"
runpy.run_module("passbridge", run_name="__main__", alter_sys=True)
"""


def _loaded_by_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *flags: str) -> set[str]:
    wrapper = tmp_path / "record_modules.py"
    wrapper.write_text(WRAPPER)
    out = tmp_path / "modules.txt"
    monkeypatch.setenv("PB_MODULES_OUT", str(out))
    monkeypatch.setattr(test_service_process, "PASSBRIDGE", [sys.executable, str(wrapper)])
    server = start_server(tmp_path, extra=flags)
    code, text = server.stop(signal.SIGTERM)
    assert code == 0, text
    return set(out.read_text().split())


def _simulators(modules: set[str]) -> list[str]:
    return sorted(m for m in modules
                  if any(m == name or m.startswith(name + ".") for name in SIMULATORS))


def test_serve_without_simulate_loads_no_simulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = _loaded_by_serve(tmp_path, monkeypatch)
    assert "passbridge.service.app" in loaded
    assert _simulators(loaded) == []
    assert _fleet(loaded) == []


# Fleet mode is opt-in (issue 12): without --fleet, no NATS client and no fleet code.
FLEET = ("nats", "passbridge.fleet")


def _fleet(modules: set[str]) -> list[str]:
    return sorted(m for m in modules
                  if any(m == name or m.startswith(name + ".") for name in FLEET))


def test_serve_with_fleet_loads_the_nats_client_even_with_nats_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = _loaded_by_serve(tmp_path, monkeypatch, "--fleet", "nats://127.0.0.1:1")
    assert {"passbridge.fleet.site_link", "nats"} <= loaded


def test_serve_with_simulate_loads_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _loaded_by_serve(tmp_path, monkeypatch, "--simulate")
    assert {"passbridge.sim.radios", "bumble"} <= loaded
