"""Fleet fixtures: a real nats-server and a real PostgreSQL, run by
``passbridge.sim.local_engines`` (``--pg-url`` / ``PASSBRIDGE_PG_URL`` for an existing one)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from passbridge.sim.local_engines import (
    LocalPostgres,
    NatsServer,
    PostgresUnavailable,
    create_database,
)
from tests.fleet.nats_fixture import running_nats
from tests.fleet.support import Site


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server with JetStream, its own port and store, stopped after the test."""
    with running_nats(tmp_path) as server:
        yield server


def _external_pg_url(config: pytest.Config) -> str | None:
    option = config.getoption("--pg-url", default=None)
    return option or os.environ.get("PASSBRIDGE_PG_URL") or None


@pytest.fixture(scope="session")
def pg_server_url(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One PostgreSQL for the session: the given one, or an embedded one."""
    external = _external_pg_url(request.config)
    if external:
        yield external
        return
    try:
        server = LocalPostgres(tmp_path_factory.mktemp("pg"))
        server.start()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL could not start here ({exc}); set PASSBRIDGE_PG_URL to "
                    "use an existing server")
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
async def pg_url(pg_server_url: str) -> AsyncIterator[str]:
    """A fresh database of its own for one test."""
    yield await create_database(pg_server_url)


@pytest.fixture
def own_postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalPostgres]:
    """A PostgreSQL this test may stop, kill and restart (never a given server)."""
    if _external_pg_url(request.config):
        pytest.skip("stops and restarts PostgreSQL: runs only on the embedded one "
                    "(PASSBRIDGE_PG_URL / --pg-url is set)")
    try:
        server = LocalPostgres(tmp_path / "own-pg")
        server.start()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL could not start here: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def sites() -> Iterator[list[Site]]:
    """The ``serve`` processes a test started (``support.serve_site``): killed after it."""
    started: list[Site] = []
    yield started
    for site in started:
        if site.process.poll() is None:
            site.process.kill()
            site.process.wait(20)
