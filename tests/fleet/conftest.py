"""Fleet fixtures: a real nats-server (nats_fixture.py); the hub's PostgreSQL
fixture (pg_fixture.py) joins here when it lands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet.nats_fixture import NatsServer, running_nats


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server with JetStream, its own port and store, stopped after the test."""
    with running_nats(tmp_path) as server:
        yield server
