"""Shared fixtures. Tests read ../shared in place and skip where it is absent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.service_support import Client, Rig

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS.parent
SHARED = PROJECT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or a skip naming what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared is absent here ({path} not found); shared contract tests skipped")
    return path


@pytest.fixture
def shared_dir() -> Path:
    return shared_path()


@pytest.fixture
async def rig() -> AsyncIterator[tuple[Rig, Client]]:
    """The service tests' rig (tests/service_support.py) served by a real aiohttp
    server, with a client to it. Imported here, not at the top, so that a run of
    the pure core tests loads no service code."""
    from tests.service_support import served_rig

    async with served_rig() as pair:
        yield pair


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--pg-url``: the fleet tests' PostgreSQL (tests/fleet/conftest.py); here
    because pytest reads options only from the first conftest it loads."""
    parser.addoption("--pg-url", default=None,
                     help="an existing PostgreSQL for the fleet tests (else PASSBRIDGE_PG_URL, "
                          "else an embedded one)")


# --- the `slow` marker: `pytest -m "not slow"` is the inner loop, CI runs all --------

# Whole modules that are slow, and why, by their path under tests/ (the
# folders mirror the package: see tests/README.md). Tests in mixed modules carry
# `@pytest.mark.slow` themselves. Keep this list short: a module belongs
# here only when every test in it is process-level, waits out real time,
# or is a property test with hundreds of examples.
SLOW_MODULES = {
    # every test starts `passbridge serve` (or runs schemathesis against one)
    "process/test_service_process.py",
    # `serve --nfc` and the Bluetooth radio over bumble, each a real process or link
    "process/test_service_hardware.py",
    # `serve --simulate` with simulated OSDP readers on ptys, a real process
    "process/test_osdp_process.py",
    # SIGHUP reloads of a real `passbridge serve`
    "process/test_site_reload_process.py",
    # nfcpy's udp driver over loopback sockets: each test waits out real
    # frame timeouts, presence checks and hold-offs
    "adapters/test_nfc_udp_reader.py",
    "sim/test_nfc_udp_card.py",
    "adapters/test_nfc_udp_aliro.py",
    # property-heavy: 60 generated scenario files, each run on a whole rig
    "scenario/test_scenario_fuzz.py",
    # property-heavy: the engine against a reference model, 300 step sequences
    "core/test_two_factor_properties.py",
    # property-heavy: state resolution and overlaps against brute force
    # (300 and 2 x 150 examples; the one plain test checks their time zones)
    "core/test_schedule_properties.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of SLOW_MODULES slow; nothing is skipped or deselected here."""
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(TESTS) and path.relative_to(TESTS).as_posix() in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
